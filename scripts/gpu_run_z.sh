#!/usr/bin/env bash
# H200 session Z (prepared 2026-12-01, not yet run): which phase of the training step launches its
# ~2,000 kernels (run Y: the step is paced by the host's launches, 37 ms of host time for 22 ms of
# kernels). bench_train_step --breakdown now sorts the CUPTI kernel list into forward, backward,
# optimizer and EMA by the compiled step's HLO (convfirst/cost/kernel_phases.py), and records the
# host's share of each step. auto/auto compiles Mosaic kernels: its limit is 240 s (run Y's 110 s cut it).
# Then, separately (carry .whl): CONVFIRST_COMMIT=<sha> REPRODUCE_ARGS="--only model=convfirst_tiny
#   --only impl=auto --rerun" bash scripts/gpu_reproduce.sh $OUT efficiency-table:240 waterline:240
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_z.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
train() { timeout $4 python scripts/bench_train_step.py --models $1 --impl $2 --bwd_impl $3 --framework_only \
  --breakdown --batch 128 --precision bf16 --iters 10 --warmup 3 --out "$out/train_step_$1_$2_$3_phases.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
train convfirst_tiny_ln xla_native xla_native 150
train convfirst_tiny_ln auto auto 240
} 2>&1 | filter | json_filter | tee "$out/run_z.log"
