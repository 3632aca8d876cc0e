#!/usr/bin/env bash
# H200 session V (prepared 2026-12-01, not yet run): why run R's steady-state training steps (steps
# dispatched back to back) are slower than steps blocked one by one for ConvFirst and not for ConvNeXt.
# nvidia-smi samples SM clock, power and the active clock-event (throttle) reasons every 100 ms while
# both loops run; if the clock drops in the steady loop, the power limit is the cause.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_v.sh $OUT
set -u
out=${1:?output dir}
. scripts/gpu_env.sh  # PYTHONPATH, filter
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active \
  --format=csv -lms 100 > "$out/clocks.csv" &
smi=$!
train() { echo "start $1 $2 $(date +%T.%N)"; timeout $4 python scripts/bench_train_step.py --models $1 --impl $2 \
  --bwd_impl $3 --framework_only --batch 128 --precision bf16 --iters 20 --warmup 3 \
  --out "$out/train_step_$1_$2_$3.json"; echo "end $1 $2 $(date +%T.%N)"; }
{
train convfirst_tiny_ln xla_native xla_native 120
train convnext_tiny xla xla 150
} 2>&1 | filter | json_filter | tee "$out/run_v.log"
kill $smi
