#!/usr/bin/env bash
# H200 session I: the Mosaic GPU MLP ('mosaic_mlp') on the GPU: kernel tests, then convfirst_tiny's
# tuning-cache entries over every implementation (xla, xla_native, pallas_fused, mosaic_mlp) and the
# models timed per implementation (bf16, batch 128).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_i.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
res=benchmarks/results/mosaic_mlp
mkdir -p $res
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 150 python -m pytest tests/test_kernels_gpu.py -q -ra -x -k "mosaic_mlp" -p no:cacheprovider
timeout 200 python -m convfirst.cli tune --models convfirst_tiny --batch 128 --max-configs 4 --impls xla,xla_native,pallas_fused,mosaic_mlp
cp pallas_kernels/tuning/nvidia_h200.json "$out"/
timeout 170 python -m convfirst.cli bench --models convfirst_tiny,convnext_tiny --impl xla,xla_native,auto --blocks \
  --batch 128 --dtype bf16 --csv $res/bench_h200.csv --jsonl $res/bench_h200.jsonl
} 2>&1 | filter | tee "$res/run_i.log"
cp $res/* "$out"/
