#!/usr/bin/env bash
# H200 session H: sweep the fused ConvFirst kernel's flat-tile configs on convfirst_tiny's stage
# shapes next to the xla and xla_native baselines (bf16, batch 128), and the MLP alone (k=1).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_h.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
res=benchmarks/results/fused_sweep
mkdir -p $res
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 230 python scripts/sweep_fused_configs.py --shapes 14x256 --max-configs 60 --out $res/h200_14x256.json
timeout 120 python scripts/sweep_fused_configs.py --shapes 28x128 --max-configs 30 --out $res/h200_28x128.json
timeout 80 python scripts/sweep_fused_configs.py --shapes 56x64 --max-configs 16 --out $res/h200_56x64.json
timeout 60 python scripts/sweep_fused_configs.py --shapes 14x256 --k 1 --max-configs 10 --out $res/h200_14x256_k1.json
} 2>&1 | filter | tee "$res/run_h.log"
cp $res/* "$out"/
