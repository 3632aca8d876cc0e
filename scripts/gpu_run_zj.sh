#!/usr/bin/env bash
# H200 run ZJ (session 9): the 'mosaic_mlp' backward (MLP input gradient in one Mosaic GPU kernel).
# 1. its GPU correctness tests at convfirst_tiny_ln's stage shapes (outputs poisoned);
# 2. block-level forward+backward per implementation pair and the kernel alone under its 3 configs;
# 3. the training step (blocked and steady): auto/auto (now the mosaic_mlp backward where it runs) and xla_native.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zj.sh $OUT [part]
# part: tests+blocks (default: all), train
set -u
out=${1:?output dir}
part=${2:-all}
. scripts/gpu_env.sh  # PYTHONPATH, filter
train() { timeout $4 python scripts/bench_train_step.py --models $1 --impl $2 --bwd_impl $3 --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 ${5:-} --out "$out/train_step_$1_${2//+/_}_${3//+/_}.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
if [ "$part" != train ]; then
  timeout 170 python -m pytest tests/test_kernels_gpu.py -q -ra -k "backward_kernels and mosaic_mlp" -p no:cacheprovider
  timeout 300 python scripts/bench_fused_backward.py --model convfirst_tiny_ln --batch 128 --dtype bf16 \
    --pairs xla_native/xla_native,mosaic_mlp/xla_native,mosaic_mlp/mosaic_mlp --sweep 3 --sweep_impl mosaic_mlp \
    --out "$out/blocks_mosaic_bwd.json"
fi
if [ "$part" != tests+blocks ]; then
  train convfirst_tiny_ln auto auto 300 --breakdown  # 'auto' backward: mosaic_mlp where it runs (C <= 256)
  train convfirst_tiny_ln xla_native xla_native 150
fi
} 2>&1 | filter | json_filter | tee "$out/run_zj_${part//+/_}.log"
