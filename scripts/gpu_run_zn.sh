#!/usr/bin/env bash
# H200 run ZN (session 10): the training step without the host stall. jax.random.beta's rejection loop
# (mixup's lambda) made the runtime copy a loop predicate to the host in every step, so the host could
# not launch step n+1 before the GPU finished step n; train.step.sample_beta is loop-free.
# Round 1: auto/auto, auto/auto with cuDNN and custom calls in command buffers, xla_native, xla; four
# fresh processes compile in parallel, then time one at a time (--sync). Round 2: auto/auto (with the
# kernel breakdown), xla_native and xla again in fresh processes, compiled executables from round 1's
# persistent cache.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zn.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.2 JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
train() { python scripts/bench_train_step.py --models convfirst_tiny_ln --impl $1 --bwd_impl $1 --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 --sync $2 ${4:-} --out "$out/train_step_convfirst_tiny_ln_$1_$1_$3.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
echo "round 1"
train auto /tmp/sync1:4 zn1 &
XLA_FLAGS=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN train auto /tmp/sync1:4 zn1_cmdbuf_all &
train xla_native /tmp/sync1:4 zn1 &
train xla /tmp/sync1:4 zn1 &
wait
echo "round 2"
train auto /tmp/sync2:3 zn2 --breakdown &
train xla_native /tmp/sync2:3 zn2 &
train xla /tmp/sync2:3 zn2 &
wait
} 2>&1 | filter | json_filter | tee "$out/run_zn.log"
