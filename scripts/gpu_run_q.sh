#!/usr/bin/env bash
# H200 session Q: where issue #5's training step spends its time (CUPTI kernel list of one step, by
# kernel kind) for convfirst_tiny_ln with xla_native/xla_native and auto/auto. (The first attempt,
# run_q0.log, failed in the profiler call and ran the two tuning-cache GPU tests run P's timeout cut.)
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_q.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
train() { timeout $4 python scripts/bench_train_step.py --models $1 --impl $2 --bwd_impl $3 --framework_only \
  --breakdown --batch 128 --precision bf16 --iters 10 --warmup 3 --out "$out/train_step_$1_$2_$3.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
train convfirst_tiny_ln xla_native xla_native 110
train convfirst_tiny_ln auto auto 130
} 2>&1 | filter | json_filter | tee "$out/run_q.log"
