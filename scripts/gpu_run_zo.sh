#!/usr/bin/env bash
# H200 run ZO (session 10): the training step with the optimizer, gradient norm and EMA on FlatParams
# (two flat f32 vectors instead of 344 parameter leaves; run ZN: ~470 small kernels, 5.6 of 21 ms).
# 1. auto/auto, xla_native and xla in three fresh processes: compiled in parallel, timed one at a time
#    (--sync), each with its CUPTI kernel breakdown;
# 2. the GPU tests of the mosaic_mlp backward not run before (per config, determinism, fp16 gelu_tanh).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zo.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.2
train() { python scripts/bench_train_step.py --models convfirst_tiny_ln --impl $1 --bwd_impl $1 --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 --sync /tmp/sync_zo:3 --breakdown \
  --out "$out/train_step_convfirst_tiny_ln_$1_$1_zo.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
train auto & train xla_native & train xla &
wait
timeout 240 python -m pytest tests/test_kernels_gpu.py -q -ra -k "mosaic_backward or backward_kernels" -p no:cacheprovider
} 2>&1 | filter | json_filter | tee "$out/run_zo.log"
