#!/usr/bin/env bash
# H200 session U (prepared 2026-12-01, not yet run): what this session built untimed. (1) The inference
# copy in final form (1x1 weights cast, conv bias folded: fewer small kernels per block) against
# per-call folding, with the pipelined wall-clock next to the kernel sum and the blocked wall-clock,
# convnext_tiny on xla in the same process. (2) mosaic_mlp's ping-pong schedule: the GPU-only tests
# (incl. two ping-pong configs), then ping-pong against not with two warpgroups at 28x28x128 and
# 14x14x256 (h_regs on, paired configs adjacent).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_u.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 150 python -m convfirst.cli bench --models convfirst_tiny,convnext_tiny --impl xla,auto --batch 128 \
  --dtype bf16 --breakdown --csv "$out/bench_u_per_call.csv" --jsonl "$out/bench_u_per_call.jsonl"
timeout 90 python -m convfirst.cli bench --models convfirst_tiny --impl auto --batch 128 --dtype bf16 \
  --breakdown --fold-ahead --csv "$out/bench_u_folded.csv" --jsonl "$out/bench_u_folded.jsonl"
timeout 100 python -m pytest tests/test_kernels_gpu.py -q -ra -k gpu_only -p no:cacheprovider
timeout 150 python scripts/probe_mosaic_mlp.py --batch 128 --channels 128,256 --warpgroups 2 --pingpong 1,0 \
  --h-regs 1 --delay-release 0 --seconds-per-shape 55 --out "$out/probe_pingpong.json"
} 2>&1 | filter | tee "$out/run_u.log"
