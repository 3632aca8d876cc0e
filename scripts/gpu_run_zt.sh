#!/usr/bin/env bash
# H200 run ZT (session 11): the grouped conv that mosaic_mlp leaves to XLA, with its weight widened to
# group width 16 ... C (block-diagonal) next to the native group width 8, at convfirst_tiny's stage shapes.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zt.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
python scripts/probe_grouped_conv.py --batch 128 --out "$out/probe_grouped_conv_widened.json"
} 2>&1 | filter | tee "$out/run_zt.log"
