#!/usr/bin/env bash
# H200 session S: (1) whether XLA's command buffers (CUDA graphs) cause run R's slow steady state
# (steps dispatched back to back 39.1 ms against 29.5 ms blocked per step, xla_native): the same two
# steps with command buffers off; (2) convfirst_tiny's efficiency-table cells (xla, auto) and its auto
# waterline cell on the H200 with the current kernels (carry .whl, see gpu_reproduce.sh).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_s.sh $OUT
set -u
out=${1:?output dir}
(
. scripts/gpu_env.sh  # PYTHONPATH, filter
train() { XLA_FLAGS=--xla_gpu_enable_command_buffer= timeout $4 python scripts/bench_train_step.py --models $1 \
  --impl $2 --bwd_impl $3 --framework_only --batch 128 --precision bf16 --iters 10 --warmup 3 \
  --out "$out/train_step_$1_$2_$3_no_command_buffer.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
echo "XLA_FLAGS=--xla_gpu_enable_command_buffer="
train convfirst_tiny_ln xla_native xla_native 90
train convfirst_tiny_ln auto auto 100
} 2>&1 | filter | json_filter | tee "$out/run_s.log"
)
REPRODUCE_ARGS="--only model=convfirst_tiny --rerun" bash scripts/gpu_reproduce.sh "$out" efficiency-table:90
REPRODUCE_ARGS="--only model=convfirst_tiny --only impl=auto --rerun" bash scripts/gpu_reproduce.sh "$out" waterline:60
