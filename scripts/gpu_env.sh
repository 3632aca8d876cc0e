# Sourced by the scripts/gpu_run_*.sh that use it (repo root on the device machine): the import path
# and `filter`, which drops JAX/XLA log noise (Triton deprecation, slow-compile alarms, CUPTI delay-kernel
# warnings, blank lines) from the run logs.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
: "${CONVFIRST_COMMIT:?set CONVFIRST_COMMIT=<sha>: the device copy has no usable git history, rows would name a stale commit}"
filter() { grep -v -e "Pallas Triton backend is deprecated" -e slow_operation -e '^\*\*\*' -e "Very slow" -e '^$' -e "Delay kernel" -e "return rule"; }
# bench_train_step.py prints its JSON report after the summary lines (its --out file keeps it): drop it from logs.
json_filter() { grep -v -e '^ *[]["{}]' -e '^ *[0-9.e-]*,\?$'; }
