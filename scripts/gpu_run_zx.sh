#!/usr/bin/env bash
# H200 run ZX (session 12): the MLP kernel's split tail (MosaicMLPConfig(split_tail=True), built in
# session 11 and never run on a GPU): its GPU tests, the wave probe (each config checked against the
# reference), the tuner at convfirst_tiny's 14x14x256 stage (split_tail is the third mosaic_mlp
# candidate there: --max-configs 3), then convfirst_tiny `auto` on the updated cache.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zx.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 130 python -m pytest tests/test_kernels_gpu.py -q -rs -p no:cacheprovider -k gpu_only
timeout 130 python scripts/probe_mosaic_waves.py --out "$out/probe_mosaic_waves_zx.json"
timeout 120 python -m convfirst.cli tune --models convfirst_tiny --only 14x14x256 --max-configs 3 --impls mosaic_mlp --batch 128
cp pallas_kernels/tuning/nvidia_h200.json "$out/"
timeout 170 python -m convfirst.cli bench --models convfirst_tiny --impl auto --batch 128 --dtype bf16 --breakdown \
  --fold-ahead --csv "$out/bench_zx_folded.csv" --jsonl "$out/bench_zx_folded.jsonl"
} 2>&1 | filter | tee "$out/run_zx.log"
