#!/usr/bin/env bash
# H100 session A: autotune the block kernels of the reference models, then benchmark models and blocks.
# Usage (device machine, repo root): bash scripts/gpu_run_a.sh $OUT
set -u
out=${1:?output dir}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
filter() { grep -v -e "Pallas Triton backend is deprecated" -e slow_operation_alarm -e '^\*\*\*' -e "Very slow compile" -e '^$'; }
cf() { python -m convfirst.cli "$@" 2>&1 | filter; }
{
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 200 python -m convfirst.cli tune --models convfirst_tiny --batch 128 --max-configs 6 --impls pallas_fused,xla 2>&1 | filter | grep -v "^  convfirst_block"
timeout 170 python -m convfirst.cli tune --models mbconvnet_b0 --batch 128 --max-configs 4 --impls pallas_fused,xla 2>&1 | filter | grep -v "^  mbconv_block"
cp pallas_kernels/tuning/*.json "$out"/
timeout 200 python -m convfirst.cli bench --models convfirst_tiny,convnext_tiny,efficientnet_b0,mbconvnet_b0 --impl xla,auto --batch 128 --dtype bf16 --iters 30 --csv "$out/bench_models.csv" --jsonl "$out/bench_models.jsonl" 2>&1 | filter
} 2>&1 | tee "$out/run_a.log"
