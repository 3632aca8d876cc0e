#!/usr/bin/env bash
# H100 session C: the experiment runner's efficiency table (quick set) and measured waterline, in
# fresh processes per cell. Needs the ml_collections wheel carried in .whl/ (not on the GPU image).
# Every step resumes: rerun the script until the logs say no cell is left.
# Usage (device machine, repo root): CONVFIRST_COMMIT=<sha> bash scripts/gpu_run_c.sh $OUT [TABLE]
# TABLE: efficiency-table:quick (default) or efficiency-table (all 30 cells).
set -u
out=${1:?output dir}
table=${2:-efficiency-table:quick}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
res=benchmarks/results
{
timeout 400 python -m convfirst.cli reproduce $table --out $res/efficiency_table --time-limit 370
timeout 70 python scripts/bench_train_step.py --models efficientnet_b0 --batch 128 --precision bf16 --iters 20 --warmup 5 --out $res/train_step_overhead_efficientnet_b0.json
timeout 120 python -m convfirst.cli reproduce waterline:quick --out $res/waterline --time-limit 100
} 2>&1 | grep -v -e "Pallas Triton backend is deprecated" -e slow_operation -e '^\*\*\*' -e "Very slow" -e '^$' -e "Delay kernel" | tee "$out/run_c.log"
tar czf "$out/results_c.tgz" $res/efficiency_table $res/waterline $res/train_step_overhead_efficientnet_b0.json 2>/dev/null
