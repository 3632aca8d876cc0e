#!/usr/bin/env bash
# H200 session Z, probe 2 (2026-12-01): run ZA showed plain fusions cost the host ~2 us per launch and
# a call ~3 us per buffer, far from the step's 29-46 ms of host time: which launch kind is dear (XLA
# fusion, cuBLAS GEMM, cuDNN grouped conv, Mosaic GPU kernel), and does the host wait on the GPU when
# calls go back to back (steady)? Default flags.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zb.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 300 python scripts/probe_step_dispatch.py --out "$out/probe_dispatch_kinds.json"
} 2>&1 | filter | json_filter | tee "$out/run_zb.log"
