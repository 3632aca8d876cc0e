#!/usr/bin/env bash
# H200 session Z, run ZE (2026-12-01): inference again after run ZI (3.699 ms, 27.6 %; 126 launches),
# now with the model state passed to each call as pure dicts of arrays (no per-call flattening of ~300
# nnx.Variable objects: the blocked wall clock), and convnext_tiny on xla again (in run ZI XLA's
# autotuner picked cuDNN's grouped direct kernel for its 7x7 depthwise convs: 26.6 ms, against 13.2 ms
# in runs P and X).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_ze.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 170 python -m convfirst.cli bench --models convfirst_tiny --impl auto --batch 128 --dtype bf16 --breakdown \
  --fold-ahead --csv "$out/bench_ze_folded.csv" --jsonl "$out/bench_ze_folded.jsonl"
timeout 110 python -m convfirst.cli bench --models convnext_tiny --impl xla --batch 128 --dtype bf16 --breakdown \
  --csv "$out/bench_ze_convnext.csv" --jsonl "$out/bench_ze_convnext.jsonl"
} 2>&1 | filter | tee "$out/run_ze.log"
