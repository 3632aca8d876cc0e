#!/usr/bin/env bash
# H200 run ZY (session 12): what run ZW's and ZV's time limits left: the two mosaic_mlp backward GPU
# cases ZW cut (BatchNorm 56x56x64, fp16 gelu_tanh), and the training step after the forward-only
# widening of the grouped conv (ZV timed the widening in both directions: slower than ZR).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zy.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 200 python -m pytest tests/test_kernels_gpu.py -q -rs -p no:cacheprovider -k "backward_kernels_match and mosaic"
XLA_PYTHON_CLIENT_MEM_FRACTION=0.3 timeout 330 python scripts/bench_train_step.py --models convfirst_tiny_ln --impl auto \
  --bwd_impl auto --framework_only --batch 128 --precision bf16 --iters 10 --warmup 3 --breakdown \
  --out "$out/train_step_convfirst_tiny_ln_auto_auto_zy.json" | json_filter
} 2>&1 | filter | tee "$out/run_zy.log"
