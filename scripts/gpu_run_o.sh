#!/usr/bin/env bash
# H200 session O: the training steps run N lacked for issue #5's comparisons: convnext_tiny with
# impl=xla, convfirst_tiny_ln with xla_native/xla_native (bf16, batch 128).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_o.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
train() { timeout $4 python scripts/bench_train_step.py --models $1 --impl $2 --bwd_impl $3 --framework_only \
  --batch 128 --precision bf16 --iters 15 --warmup 3 --out "$out/train_step_$1_$2_$3.json"; }
{
train convnext_tiny xla xla 120
train convfirst_tiny_ln xla_native xla_native 100
} 2>&1 | filter | grep -v '^ \|^{\|^}' | tee "$out/run_o.log"
