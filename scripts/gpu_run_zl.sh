#!/usr/bin/env bash
# H200 run ZL (session 9): where the host's time goes in the auto/auto training step (run ZJ: 21.1 ms of
# kernels, 33.7 ms of host dispatch per step): jax.profiler host trace of three steps, default XLA flags.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zl.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 330 python scripts/bench_train_step.py --models convfirst_tiny_ln --impl auto --bwd_impl auto --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 --host_trace /tmp/host_trace \
  --out "$out/train_step_convfirst_tiny_ln_auto_auto_zl.json"
} 2>&1 | filter | json_filter | tee "$out/run_zl.log"
