#!/usr/bin/env bash
# H200 session W (2026-12-01): retune mosaic_mlp at convfirst_tiny's three stage shapes now that the
# ping-pong schedule is in the space (run U: 8-15 % faster at C=128/256). The other implementations'
# times were meant to stay from the entries' earlier tuning; the merge of that commit compared the
# protocol strings whole and dropped them (a wall-clock field added since), so they were restored from
# the earlier entries afterwards (autotune._merged now compares the kernel-time protocol only). The
# updated cache is copied to $OUT for committing.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_w.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
tune() { timeout $3 python -m convfirst.cli tune --models convfirst_tiny --batch 128 --dtype bf16 --impls mosaic_mlp \
  --max-configs $2 --only $1; cp pallas_kernels/tuning/nvidia_h200.json "$out/"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
tune 28x28x128 5 110
tune 14x14x256 4 90
tune 56x56x64 13 200
} 2>&1 | filter | tee "$out/run_w.log"
