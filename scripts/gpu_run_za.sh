#!/usr/bin/env bash
# H200 session Z, probe (2026-12-01): what a training step call's host time scales with (run Z: 45.9 ms
# host for 21.9 ms of kernels, 2,051 launches): XLA's per-kernel launch cost, the per-buffer cost of
# a call's arguments, whether XLA forms command buffers (CUDA graphs) in the step, each under the
# default flags and with command buffers off (fresh processes: XLA reads its flags at start-up).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_za.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
nproc; lscpu | grep -e "Model name" -e "MHz" | head -3
echo "== default flags"
timeout 200 python scripts/probe_step_dispatch.py --train --out "$out/probe_dispatch_default.json"
echo "== command buffers off"
XLA_FLAGS=--xla_gpu_enable_command_buffer= timeout 200 python scripts/probe_step_dispatch.py --train \
  --out "$out/probe_dispatch_nocmdbuf.json"
} 2>&1 | filter | json_filter | tee "$out/run_za.log"
