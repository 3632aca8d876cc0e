#!/usr/bin/env bash
# H200 run ZV (session 11): after run ZU, the inference copy holds the grouped conv weight as the GPU conv
# takes it (bf16, widened to group width 16 once: no per-call scatter and cast kernels, 33 + 27 launches
# in ZU), the Mosaic MLP kernel's time against its wave count (scripts/probe_mosaic_waves.py), and the
# training step with the widened conv (ZU's attempt timed out while compiling).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zv.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 170 python -m convfirst.cli bench --models convfirst_tiny --impl auto --batch 128 --dtype bf16 --breakdown \
  --fold-ahead --csv "$out/bench_zv_folded.csv" --jsonl "$out/bench_zv_folded.jsonl"
timeout 120 python scripts/probe_mosaic_waves.py --out "$out/probe_mosaic_waves.json"
XLA_PYTHON_CLIENT_MEM_FRACTION=0.3 timeout 300 python scripts/bench_train_step.py --models convfirst_tiny_ln --impl auto \
  --bwd_impl auto --framework_only --batch 128 --precision bf16 --iters 10 --warmup 3 --breakdown \
  --out "$out/train_step_convfirst_tiny_ln_auto_auto_zv.json" | json_filter
} 2>&1 | filter | tee "$out/run_zv.log"
