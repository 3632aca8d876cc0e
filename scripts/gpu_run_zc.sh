#!/usr/bin/env bash
# H200 session Z, probe 3 (2026-12-01): the training step's host time by event (jax.profiler trace of
# three steps, host threads totalled per step: convfirst/cost/host_trace.py). Runs ZA/ZB: launches cost
# the host 3-13 us each and a call 3 us per buffer, ~11 ms for the step's 2,051 launches and 1,454
# buffers, against 29-46 ms measured. xla_native forward and backward (no Mosaic compile).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zc.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 240 python scripts/bench_train_step.py --models convfirst_tiny_ln --impl xla_native --bwd_impl xla_native \
  --framework_only --host_trace /tmp/host_trace --batch 128 --precision bf16 --iters 10 --warmup 3 \
  --out "$out/train_step_convfirst_tiny_ln_host_trace.json"
} 2>&1 | filter | json_filter | tee "$out/run_zc.log"
