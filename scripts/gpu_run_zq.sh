#!/usr/bin/env bash
# H200 run ZQ (session 10): the LayerNorm backward of the mosaic_mlp block backward in one Pallas
# kernel (ln_bwd_triton; XLA's autodiff ran it as 5-7 kernels per block, ~2 of 7.5 ms of the step's
# fusions in run ZP).
# 1. probe: the kernel against XLA's autodiff at the stage shapes, over tile rows and warps;
# 2. the training step: auto/auto (kernel breakdown), xla_native and xla in fresh processes, compiled in
#    parallel, timed one at a time (--sync), auto/auto's HLO;
# 3. the GPU tests of the mosaic_mlp backward (stage shapes, every config, determinism incl. the norm's).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zq.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 120 python scripts/probe_ln_bwd.py --batch 128 --out "$out/probe_ln_bwd.json"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.25 JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
train() { python scripts/bench_train_step.py --models convfirst_tiny_ln --impl $1 --bwd_impl $1 --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 --sync /tmp/sync_zq:3 ${2:-} \
  --out "$out/train_step_convfirst_tiny_ln_$1_$1_zq.json"; }
train auto "--breakdown --hlo $out/hlo" & train xla_native & train xla &
wait
timeout 200 python -m pytest tests/test_kernels_gpu.py -q -ra -k "backward and mosaic" -p no:cacheprovider
} 2>&1 | filter | json_filter | tee "$out/run_zq.log"
