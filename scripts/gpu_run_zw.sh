#!/usr/bin/env bash
# H200 run ZW (session 11): GPU correctness after the widened compute-dtype conv (every ConvFirst
# implementation at the stage shapes on native and widened weights, the mosaic_mlp backward), then
# convfirst_tiny's efficiency-table and waterline cells again (they predate the ping-pong retune).
# Needs ml_collections for `convfirst reproduce`: carry .whl (see scripts/gpu_reproduce.sh).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zw.sh $OUT
set -u
out=${1:?output dir}
(. scripts/gpu_env.sh
 timeout 200 python -m pytest tests/test_kernels_gpu.py -q -rs -p no:cacheprovider \
   -k "(matches_reference_bf16 or widened) and convfirst_block and not k7 or backward_kernels_match and mosaic" 2>&1 \
   | filter | tee "$out/run_zw_tests.log")
REPRODUCE_ARGS="--only model=convfirst_tiny --rerun" bash scripts/gpu_reproduce.sh "$out" efficiency-table:150 waterline:150
