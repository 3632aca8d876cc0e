#!/usr/bin/env bash
# H200 session Z, run ZD (2026-12-01): issue #5's training steps with the train state held as pure
# dicts of arrays (train/state.py): a host trace of the step (on CPU) found most of its host time in
# Python rebuilding ~1,450 nnx.Variable pytree nodes per call. Run R's protocol (blocked and steady,
# 10 steps after 3), plus the host trace of the xla_native step. auto/auto compiles Mosaic kernels.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zd.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
train() { timeout $4 python scripts/bench_train_step.py --models $1 --impl $2 --bwd_impl $3 --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 ${5:-} --out "$out/train_step_$1_$2_$3.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
train convfirst_tiny_ln xla_native xla_native 120 "--host_trace /tmp/host_trace"
train convfirst_tiny_ln auto auto 200
train convfirst_tiny_ln xla xla 100
train convnext_tiny xla xla 100
} 2>&1 | filter | json_filter | tee "$out/run_zd.log"
