#!/usr/bin/env bash
# H200 run ZP (session 10): the optimized HLO of the convfirst_tiny_ln training step (auto/auto and
# xla_native) next to its CUPTI kernel list, to see what the ~1,000 XLA fusions of the backward
# (7.5 of 20.2 ms in run ZO) compute.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zp.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.3
train() { python scripts/bench_train_step.py --models convfirst_tiny_ln --impl $1 --bwd_impl $1 --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 --sync /tmp/sync_zp:2 --breakdown --hlo "$out/hlo" \
  --out "$out/train_step_convfirst_tiny_ln_$1_$1_zp.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
train auto & train xla_native &
wait
} 2>&1 | filter | json_filter | tee "$out/run_zp.log"
