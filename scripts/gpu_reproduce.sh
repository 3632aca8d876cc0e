#!/usr/bin/env bash
# Run `convfirst reproduce` experiments on the device machine and bring their run directories back.
# The machine lacks ml_collections: carry .whl (pip download ml_collections==1.1.0 --no-deps -d .whl).
# Each experiment stops starting cells after its --time-limit; the same command resumes there.
# Usage (device machine, repo root; REPRODUCE_ARGS, optional, go to every experiment, e.g.
# REPRODUCE_ARGS="--only model=convfirst_tiny --rerun"):
#   CONVFIRST_COMMIT=<sha> bash scripts/gpu_reproduce.sh $OUT efficiency-table:420 waterline:150
set -u
out=${1:?output dir}; shift
: "${CONVFIRST_COMMIT:?set CONVFIRST_COMMIT=<sha>: the device copy has no usable git history, rows would name a stale commit}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
for spec in "$@"; do
  name=${spec%%:*}; limit=${spec##*:}; dir=benchmarks/results/${name//-/_}
  python3 -m convfirst.cli reproduce "$name" --out "$dir" --time-limit "$limit" ${REPRODUCE_ARGS:-} 2>&1 \
    | grep -v -e "Triton backend is deprecated" -e slow_operation -e "Very slow" | tee -a "$out/reproduce.log"
  tar czf "$out/${name//-/_}.tgz" "$dir"
done
