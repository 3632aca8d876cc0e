#!/usr/bin/env bash
# H200 session M: the grouped conv four ways (what mosaic_mlp's conv should be), then the tuning-cache
# entries of convfirst_tiny with mosaic_mlp's new space (h_regs, clusters), then mosaic_mlp's GPU tests
# (batch 16: padded tiles, every candidate of one shape).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_m.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 100 python scripts/probe_grouped_conv.py --batch 128 --out $out/probe_grouped_conv.json
timeout 300 python -m convfirst.cli tune --models convfirst_tiny --batch 128 --max-configs 8 \
  --impls xla,xla_native,pallas_fused,mosaic_mlp
cp pallas_kernels/tuning/nvidia_h200.json "$out"/
timeout 150 python -m pytest tests/test_kernels_gpu.py -q -ra -k "mosaic_mlp" -p no:cacheprovider
} 2>&1 | filter | tee "$out/run_m.log"
