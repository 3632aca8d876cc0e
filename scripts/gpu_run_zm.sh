#!/usr/bin/env bash
# H200 run ZM (session 9): process-to-process spread of the training step. The same auto/auto step
# measured 35.3 / 33.7 ms (blocked / steady, run ZJ) and 29.3 / 24.0 ms (run ZL); here xla_native and
# auto/auto alternate, two fresh processes each, default XLA flags.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zm.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
train() { timeout $3 python scripts/bench_train_step.py --models convfirst_tiny_ln --impl $1 --bwd_impl $1 \
  --framework_only --batch 128 --precision bf16 --iters 10 --warmup 3 \
  --out "$out/train_step_convfirst_tiny_ln_$1_$1_zm$2.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
train xla_native 1 80
train auto 1 130
train xla_native 2 80
train auto 2 130
} 2>&1 | filter | json_filter | tee "$out/run_zm.log"
