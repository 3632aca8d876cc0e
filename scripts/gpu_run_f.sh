#!/usr/bin/env bash
# H100 session F: extend the shipped tuning cache to more registered models, then continue the
# measured waterline (resumes). Needs the ml_collections wheel carried in .whl/ (waterline runner).
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_f.sh $OUT MODELS [TUNE_S] [WATERLINE_S]
set -u
out=${1:?output dir}
models=${2:?comma-separated models to tune}
tune_s=${3:-330}
waterline_s=${4:-0}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
filter() { grep -v -e "Pallas Triton backend is deprecated" -e slow_operation -e '^\*\*\*' -e "Very slow" -e '^$' -e "Delay kernel" -e "^  convfirst_block" -e "^  mbconv_block"; }
{
timeout $tune_s python -m convfirst.cli tune --models $models --batch 128 --max-configs 4 --impls pallas_fused,xla
cp pallas_kernels/tuning/*.json "$out"/
if [ "$waterline_s" -gt 0 ]; then
  timeout $waterline_s python -m convfirst.cli reproduce waterline:quick --out benchmarks/results/waterline --time-limit $((waterline_s - 20))
fi
} 2>&1 | filter | tee "$out/run_f_$(date +%H%M).log"
tar czf "$out/waterline.tgz" benchmarks/results/waterline
