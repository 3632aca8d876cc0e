#!/usr/bin/env bash
# H200 run ZZ (session 12): after run ZX, split_tail's split programs run their two warpgroups free
# (ZX: locked into ping-pong turns, the split tail cost 0.0954 ms a 14x14x256 block against 0.0780).
# Its GPU tests, the tuner at 14x14x256 (split_tail is the third candidate), convfirst_tiny `auto` on
# the updated cache, and the MLP kernel alone in split programs only (8,448 rows) and at batch 128.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zz.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 100 python -m pytest tests/test_kernels_gpu.py -q -rs -p no:cacheprovider -k gpu_only
timeout 130 python -m convfirst.cli tune --models convfirst_tiny --only 14x14x256 --max-configs 3 --impls mosaic_mlp --batch 128
cp pallas_kernels/tuning/nvidia_h200.json "$out/"
timeout 150 python -m convfirst.cli bench --models convfirst_tiny --impl auto --batch 128 --dtype bf16 --breakdown \
  --fold-ahead --csv "$out/bench_zz_folded.csv" --jsonl "$out/bench_zz_folded.jsonl"
timeout 120 python scripts/probe_mosaic_waves.py --configs pingpong_split_tail --rows 8448,25088 \
  --out "$out/probe_mosaic_waves_zz.json"
} 2>&1 | filter | tee "$out/run_zz.log"
