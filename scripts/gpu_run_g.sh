#!/usr/bin/env bash
# H100 session G: tuning cache for the grouped MBConvNets, then the fused backward again with the
# sweep-informed heuristic configs (blocks, and the convfirst_tiny_ln training step with auto/auto).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_g.sh $OUT
set -u
out=${1:?output dir}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
res=benchmarks/results/fused_backward
filter() { grep -v -e "Pallas Triton backend is deprecated" -e slow_operation -e '^\*\*\*' -e "Very slow" -e '^$' -e "Delay kernel" -e "^  convfirst_block" -e "^  mbconv_block" -e '^[ {}\[\]]' -e "return rule"; }
{
timeout 130 python scripts/bench_fused_backward.py --model convfirst_tiny_ln --batch 128 --dtype bf16 \
  --pairs xla/xla,pallas_fused/pallas_fused --out $res/blocks_tuned.json
timeout 100 python scripts/bench_train_step.py --models convfirst_tiny_ln --impl auto --bwd_impl auto --framework_only \
  --batch 128 --precision bf16 --iters 20 --warmup 5 --out $res/train_step_convfirst_tiny_ln_auto_auto_tuned.json
timeout 330 python -m convfirst.cli tune --models mbconvnet_b0_gw8,mbconvnet_b0_gw16 --batch 128 --max-configs 3 --impls pallas_fused,xla
cp pallas_kernels/tuning/*.json "$out"/
} 2>&1 | filter | tee "$out/run_g.log"
tar czf "$out/results_g.tgz" $res
