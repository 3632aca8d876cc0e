#!/usr/bin/env bash
# H200 session J: tuning-cache entries of convfirst_tiny, convfirst_tiny_ln and convfirst_small over
# xla, xla_native, pallas_fused and mosaic_mlp (bf16, batch 128), then 'auto' with that cache checked
# against the reference at every tuned shape.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_j.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
res=benchmarks/results/mosaic_mlp
mkdir -p $res
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 380 python -m convfirst.cli tune --models convfirst_tiny,convfirst_tiny_ln,convfirst_small --batch 128 \
  --max-configs 5 --impls xla,xla_native,pallas_fused,mosaic_mlp
cp pallas_kernels/tuning/nvidia_h200.json "$out"/
timeout 120 python -m pytest tests/test_kernels_gpu.py -q -ra -s -k "tuning_cache or mosaic_mlp-3" -p no:cacheprovider
} 2>&1 | filter | tee "$res/run_j.log"
cp $res/run_j.log "$out"/
