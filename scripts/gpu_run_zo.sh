#!/usr/bin/env bash
# H200 run ZO (session 10): the training step with the optimizer, gradient norm and EMA on FlatParams
# (two flat f32 vectors instead of 344 parameter leaves; run ZN: ~470 small kernels, 5.6 of 21 ms).
# Round 1: convfirst_tiny_ln auto/auto, xla_native, xla (each with its CUPTI kernel breakdown) and
# convnext_tiny xla in four fresh processes, compiled in parallel, timed one at a time (--sync).
# Round 2: the three convfirst configurations again in fresh processes (persistent compilation cache).
# Then the GPU tests of the mosaic_mlp backward not run before (per config, determinism, fp16 gelu_tanh).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zo.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.2 JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
train() { python scripts/bench_train_step.py --models $1 --impl $2 --bwd_impl $2 --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 --sync $3 ${5:-} --out "$out/train_step_$1_$2_$2_$4.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
echo "round 1"
train convfirst_tiny_ln auto /tmp/sync1:4 zo1 --breakdown &
train convfirst_tiny_ln xla_native /tmp/sync1:4 zo1 --breakdown &
train convfirst_tiny_ln xla /tmp/sync1:4 zo1 --breakdown &
train convnext_tiny xla /tmp/sync1:4 zo1 &
wait
echo "round 2"
train convfirst_tiny_ln auto /tmp/sync2:3 zo2 &
train convfirst_tiny_ln xla_native /tmp/sync2:3 zo2 &
train convfirst_tiny_ln xla /tmp/sync2:3 zo2 &
wait
timeout 200 python -m pytest tests/test_kernels_gpu.py -q -ra -k "mosaic_backward or backward_kernels" -p no:cacheprovider
} 2>&1 | filter | json_filter | tee "$out/run_zo.log"
