#!/usr/bin/env bash
# H200 run ZU (session 11): the compute-dtype grouped conv at group width 16 (compute_grouped_conv; run
# ZT's probe: cuDNN's sm90 engine, 1.2-2.4x faster than width 8 alone). convfirst_tiny's folded forward
# against run ZE (3.698 ms of kernels, 27.7 %), convnext_tiny on xla in the next process, each block
# per implementation, and the training step (against run ZR: 21.77 / 18.70 ms blocked / steady).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zu.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 170 python -m convfirst.cli bench --models convfirst_tiny --impl auto --batch 128 --dtype bf16 --breakdown \
  --fold-ahead --csv "$out/bench_zu_folded.csv" --jsonl "$out/bench_zu_folded.jsonl"
timeout 110 python -m convfirst.cli bench --models convnext_tiny --impl xla --batch 128 --dtype bf16 --breakdown \
  --no-matmul-peak --csv "$out/bench_zu_convnext.csv" --jsonl "$out/bench_zu_convnext.jsonl"
timeout 140 python -m convfirst.cli bench --models convfirst_tiny --impl xla,xla_native,mosaic_mlp --batch 128 \
  --dtype bf16 --blocks --no-models --no-matmul-peak --csv "$out/bench_zu_blocks.csv" --jsonl "$out/bench_zu_blocks.jsonl"
timeout 150 python scripts/bench_train_step.py --models convfirst_tiny_ln --impl auto --bwd_impl auto --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 --breakdown --out "$out/train_step_convfirst_tiny_ln_auto_auto_zu.json" \
  | json_filter
} 2>&1 | filter | tee "$out/run_zu.log"
