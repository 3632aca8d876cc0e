#!/usr/bin/env bash
# H200 run ZW (session 11): GPU correctness after the widened compute-dtype conv: every ConvFirst
# implementation at the stage shapes on native and widened weights (the inference copy's form), and
# the mosaic_mlp backward, whose conv gradient now goes through the forward-widened conv's custom VJP.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zw.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 200 python -m pytest tests/test_kernels_gpu.py -q -rs -p no:cacheprovider \
  -k "(widened or matches_reference_bf16 and (xla_native or mosaic_mlp or auto)) and convfirst_block and not k7 or backward_kernels_match and mosaic"
} 2>&1 | filter | tee "$out/run_zw.log"
