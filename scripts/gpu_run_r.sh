#!/usr/bin/env bash
# H200 session R: issue #5's training steps timed both ways, per step blocked (as before) and in
# steady state (steps dispatched back to back, as the trainer runs them): run Q's kernel lists summed to
# 21.8 ms for a 28.9 ms blocked xla_native step.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_r.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
train() { timeout $4 python scripts/bench_train_step.py --models $1 --impl $2 --bwd_impl $3 --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 --out "$out/train_step_$1_$2_$3.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
train convfirst_tiny_ln xla_native xla_native 100
train convfirst_tiny_ln auto auto 110
train convfirst_tiny_ln xla xla 120
train convnext_tiny xla xla 130
} 2>&1 | filter | json_filter | tee "$out/run_r.log"
