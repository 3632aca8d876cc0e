#!/usr/bin/env bash
# H100 session B: model benchmark with the shipped tuning cache, train-step overhead, GPU kernel tests.
# Usage (device machine, repo root): bash scripts/gpu_run_b.sh $OUT
set -u
out=${1:?output dir}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
filter() { grep -v -e "Pallas Triton backend is deprecated" -e slow_operation_alarm -e '^\*\*\*' -e "Very slow compile" -e '^$' -e "Delay kernel timed out"; }
{
timeout 250 python -m convfirst.cli bench --models convfirst_tiny,mbconvnet_b0,convnext_tiny,efficientnet_b0 --impl xla,auto --batch 128 --dtype bf16 --iters 20 --warmup 3 --csv "$out/bench_models.csv" --jsonl "$out/bench_models.jsonl" 2>&1 | filter
timeout 130 python scripts/bench_train_step.py --models convnext_tiny efficientnet_b0 --batch 128 --precision bf16 --iters 20 --warmup 5 --out "$out/train_step_overhead.json" 2>&1 | filter
timeout 150 python -m pytest tests/test_kernels_gpu.py -q -ra -x -k bf16 -p no:cacheprovider 2>&1 | filter | tail -25
} 2>&1 | tee "$out/run_b.log"
