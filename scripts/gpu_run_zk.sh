#!/usr/bin/env bash
# H200 run ZK (session 9): run ZJ's auto/auto step had 21.1 ms of kernels but 35.3 ms blocked, the host
# dispatching for 33.7 ms per step in steady state. The ZD host trace of the xla_native step showed XLA's
# command buffers (CUDA graphs) cut into 79 pieces by the cuDNN convolutions, which run outside them.
# Here both steps again with cuDNN convolutions and custom calls (Mosaic kernels) allowed into command buffers.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_zk.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
export XLA_FLAGS="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN"
train() { timeout $4 python scripts/bench_train_step.py --models $1 --impl $2 --bwd_impl $3 --framework_only \
  --batch 128 --precision bf16 --iters 10 --warmup 3 ${5:-} --out "$out/train_step_$1_$2_$3_cmdbuf_all.json"; }
{
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
echo "XLA_FLAGS=$XLA_FLAGS"
train convfirst_tiny_ln xla_native xla_native 150
train convfirst_tiny_ln auto auto 300
} 2>&1 | filter | json_filter | tee "$out/run_zk.log"
