#!/usr/bin/env bash
# H200 session N: retune convfirst_tiny's 14x14x256 block (run M's tuning was cut there), then the
# whole-model benchmark (convfirst_tiny xla/xla_native/auto, convnext_tiny xla/xla_native, one process)
# and the training step of convfirst_tiny_ln with impl=xla (the #5 baseline) and auto/auto.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_n.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
train() { timeout 115 python scripts/bench_train_step.py --models convfirst_tiny_ln --impl $1 --bwd_impl $2 --framework_only \
  --batch 128 --precision bf16 --iters 20 --warmup 5 --out "$out/train_step_convfirst_tiny_ln_$1_$2.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 95 python -m convfirst.cli tune --models convfirst_tiny --only 14x14x256 --batch 128 --max-configs 4 \
  --impls xla,xla_native,pallas_fused,mosaic_mlp
cp pallas_kernels/tuning/nvidia_h200.json "$out"/
timeout 220 python -m convfirst.cli bench --models convfirst_tiny,convnext_tiny --impl xla,xla_native,auto --batch 128 \
  --dtype bf16 --csv "$out/bench_models_h200.csv" --jsonl "$out/bench_models_h200.jsonl"
train auto auto
train xla xla
} 2>&1 | filter | tee "$out/run_n.log"
