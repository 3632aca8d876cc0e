#!/usr/bin/env bash
# H200 session L: mosaic_mlp's extended config space (two compute warpgroups, clusters with TMA
# multicast, register-fed project GEMM, delayed release) at convfirst_tiny's stage shapes.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_l.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
res=benchmarks/results/mosaic_mlp
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 540 python scripts/probe_mosaic_mlp.py --batch 128 --seconds-per-shape 150 --out $out/probe_mosaic_mlp.json
} 2>&1 | filter | tee "$out/run_l.log"
