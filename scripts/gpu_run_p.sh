#!/usr/bin/env bash
# H200 session P (prepared 2026-12-01, not yet run): what session N left open. The 14x14x256 tuning-cache
# entry (mosaic_mlp's new space; pallas_fused left out: its compiles used up run M's and N's budgets,
# and it measured 0.22-0.23 ms there twice), the GPU tests of mosaic_mlp's GPU-only mechanisms and of
# every cached config, then the whole-model bench with the GEMM stem, per-call and folded-ahead weights,
# with the per-kernel breakdown.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_p.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
bench() { timeout $2 python -m convfirst.cli bench --batch 128 --dtype bf16 --breakdown --csv "$out/bench_models_$1.csv" \
  --jsonl "$out/bench_models_$1.jsonl" "${@:3}"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 100 python -m convfirst.cli tune --models convfirst_tiny --only 14x14x256 --batch 128 --max-configs 6 \
  --impls xla,xla_native,mosaic_mlp
cp pallas_kernels/tuning/nvidia_h200.json "$out"/
timeout 150 python -m pytest tests/test_kernels_gpu.py -q -ra -k "mosaic_mlp or tuning_cache" -p no:cacheprovider
bench per_call 170 --models convfirst_tiny,convnext_tiny --impl xla,auto
bench folded_ahead 110 --models convfirst_tiny --impl xla_native,auto --fold-ahead
} 2>&1 | filter | tee "$out/run_p.log"
