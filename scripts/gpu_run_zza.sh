#!/usr/bin/env bash
# H200 run ZZA (session 12): GPU correctness after split_tail's removal (the kernel back to its
# session-11 form): mosaic_mlp's GPU-only variants and stage shapes, and `auto` with the H200 tuning
# cache (14x14x256 retimed in run ZZ) at every tuned block shape, batch 128, against the float32 reference.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zza.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 250 python -m pytest tests/test_kernels_gpu.py -q -rs -p no:cacheprovider \
  -k "gpu_only or tuning_cache or (matches_reference_bf16 and mosaic_mlp)"
} 2>&1 | filter | tee "$out/run_zza.log"
