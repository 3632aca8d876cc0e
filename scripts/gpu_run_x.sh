#!/usr/bin/env bash
# H200 session X (2026-12-01): whole-model inference with the retuned cache (run W): convfirst_tiny and
# convnext_tiny on auto and xla (weights folded per call), then convfirst_tiny auto with its weights
# folded ahead (ConvNet.for_inference, final form) in a second process; kernel sum, blocked and pipelined wall-clock, breakdown. Rows are written
# as they finish (a timeout keeps them).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_x.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 300 python -m convfirst.cli bench --models convfirst_tiny,convnext_tiny --impl auto,xla --batch 128 \
  --dtype bf16 --breakdown --csv "$out/bench_x_per_call.csv" --jsonl "$out/bench_x_per_call.jsonl"
timeout 200 python -m convfirst.cli bench --models convfirst_tiny --impl auto --batch 128 --dtype bf16 \
  --breakdown --fold-ahead --csv "$out/bench_x_folded.csv" --jsonl "$out/bench_x_folded.jsonl"
} 2>&1 | filter | tee "$out/run_x.log"
