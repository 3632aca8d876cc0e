#!/usr/bin/env bash
# H100 session E: the fused ConvFirst backward. GPU correctness (tests/test_kernels_gpu.py -k backward),
# per-block forward+backward timing per implementation pair, and whole training steps (time and
# memory) of convfirst_tiny_ln with XLA vs fused forward+backward, and convnext_tiny on XLA, each
# training step in a fresh process (its device peak memory is its own).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_e.sh $OUT [STEPS]
# STEPS: impl/bwd_impl pairs of the convfirst_tiny_ln training steps (default "xla/xla auto/auto");
# convnext_tiny on XLA runs when STEPS includes "convnext".
set -u
out=${1:?output dir}
steps=${2:-xla/xla auto/auto convnext}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
res=benchmarks/results/fused_backward
mkdir -p $res
step() {  # model impl bwd_impl
  timeout 100 python scripts/bench_train_step.py --models $1 --impl $2 --bwd_impl $3 --framework_only \
    --batch 128 --precision bf16 --iters 20 --warmup 5 --out $res/train_step_$1_$2_$3.json | grep -v '^[ {}\[\]]'
}
{
timeout 150 python -m pytest tests/test_kernels_gpu.py -q -k "backward" -p no:cacheprovider 2>&1 | tail -15
timeout 250 python scripts/bench_fused_backward.py --model convfirst_tiny_ln --batch 128 --dtype bf16 \
  --pairs xla/xla,pallas_fused/xla,pallas_fused/pallas_fused --sweep 6 --out $res/blocks.json
for pair in $steps; do
  if [ "$pair" = convnext ]; then step convnext_tiny xla xla; else step convfirst_tiny_ln ${pair%/*} ${pair#*/}; fi
done
} 2>&1 | grep -v -e "Pallas Triton backend is deprecated" -e slow_operation -e '^\*\*\*' -e "Very slow" -e '^$' -e "Delay kernel" -e "return rule" | tee "$out/run_e.log"
tar czf "$out/results_e.tgz" $res
