#!/usr/bin/env bash
# H200 session Y (2026-12-01): (1) where run R/V's slow steady-state training step comes from: run V
# ruled out clocks (1980 MHz throughout, no throttle reason, < 500 W); this records the host's share
# (time until the step call returns) blocked and back to back, for convfirst_tiny_ln xla_native and
# auto/auto. (2) convfirst_tiny's auto cells of the efficiency table and the waterline with the
# retuned cache (run W; carry .whl, see gpu_reproduce.sh).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_y.sh $OUT
set -u
out=${1:?output dir}
(
. scripts/gpu_env.sh  # PYTHONPATH, filter
train() { timeout $4 python scripts/bench_train_step.py --models $1 --impl $2 --bwd_impl $3 --framework_only \
  --batch 128 --precision bf16 --iters 20 --warmup 3 --out "$out/train_step_$1_$2_$3.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
train convfirst_tiny_ln xla_native xla_native 100
train convfirst_tiny_ln auto auto 110
} 2>&1 | filter | json_filter | tee "$out/run_y.log"
)
REPRODUCE_ARGS="--only model=convfirst_tiny --only impl=auto --rerun" bash scripts/gpu_reproduce.sh "$out" \
  efficiency-table:80 waterline:90
