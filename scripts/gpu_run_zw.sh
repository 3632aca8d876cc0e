#!/usr/bin/env bash
# H200 run ZW (session 11): GPU correctness after the widened compute-dtype conv (every ConvFirst
# implementation at the stage shapes on native and widened weights; the mosaic_mlp backward, whose
# conv gradient now goes through the forward-widened conv's custom VJP), then the training step with
# the conv widened in the forward only (run ZV, widened in both: 18.63 ms of kernels against ZR's 17.96).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zw.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 170 python -m pytest tests/test_kernels_gpu.py -q -rs -p no:cacheprovider \
  -k "(matches_reference_bf16 or widened) and convfirst_block and not k7 or backward_kernels_match and mosaic"
XLA_PYTHON_CLIENT_MEM_FRACTION=0.3 timeout 220 python scripts/bench_train_step.py --models convfirst_tiny_ln --impl auto \
  --bwd_impl auto --framework_only --batch 128 --precision bf16 --iters 10 --warmup 3 --breakdown \
  --out "$out/train_step_convfirst_tiny_ln_auto_auto_zw.json" | json_filter
} 2>&1 | filter | tee "$out/run_zw.log"
