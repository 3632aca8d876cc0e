#!/usr/bin/env bash
# H200 session Z, inference part (prepared 2026-12-01, not yet run): the inference copy as it now is,
# against run X (3.929 ms kernel time, 4.721 ms blocked wall, 137 launches): the stem's and the
# downsampling convs' BatchNorm folded into their kernel and bias (ConvNormAct.freeze) and the weights
# placed once in the layouts the compiled forward asks for (time_call's compiler_layouts: no per-call
# transposes of the 33 grouped-conv weights). The row's protocol says ',compiler-layouts' only if
# XLA accepted them (else a warning in the log). convnext_tiny on xla in the same process.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zi.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 280 python -m convfirst.cli bench --models convfirst_tiny,convnext_tiny --impl auto --batch 128 \
  --dtype bf16 --breakdown --fold-ahead --csv "$out/bench_zi_folded.csv" --jsonl "$out/bench_zi_folded.jsonl"
timeout 150 python -m convfirst.cli bench --models convnext_tiny --impl xla --batch 128 --dtype bf16 \
  --breakdown --csv "$out/bench_zi_convnext.csv" --jsonl "$out/bench_zi_convnext.jsonl"
} 2>&1 | filter | tee "$out/run_zi.log"
