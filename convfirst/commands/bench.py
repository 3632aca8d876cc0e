"""`convfirst bench`: inference latency, throughput and computational efficiency on this device.

    convfirst bench --models convfirst_tiny,convnext_tiny --impl xla,pallas_fused --batch 128 \
        --dtype bf16 --blocks --csv benchmarks/results/h100_infer.csv
    convfirst bench --models convfirst_tiny --impl auto --breakdown   # + where the time went, by kernel kind

Rows whose kernels show XLA's convolution autotuner gone wrong in this process get status 'outlier'
and a warning (experiments/outliers.py); `convfirst reproduce` reruns such cells in fresh processes.
"""
from __future__ import annotations

import csv
import json
import sys


def add_arguments(p):
    p.add_argument("--models", required=True, help="comma-separated registered model names")
    p.add_argument("--impl", default="xla,auto", help="comma-separated block implementations to compare "
                   "(xla, xla_native, pallas_fused, pallas_layerwise, auto; mosaic_mlp: ConvFirst blocks only)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dtype", default="bf16", help="bf16 or fp16")
    p.add_argument("--blocks", action="store_true", help="also time each distinct residual block of each model")
    p.add_argument("--no-models", action="store_true", help="only the per-block rows (with --blocks)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--no-matmul-peak", action="store_true", help="skip measuring the matmul peak")
    p.add_argument("--no-retry", action="store_true", help="do not halve the batch on out-of-memory")
    p.add_argument("--csv", help="write rows here (stable columns: convfirst.benchmark.COLUMNS)")
    p.add_argument("--jsonl", help="also append full rows (per-kernel times included) as JSON lines")
    p.add_argument("--fold-ahead", action="store_true", help="time the inference copy (ConvNet.for_inference: "
                   "every BatchNorm folded and 1x1 weights cast once) with its weights placed in the layouts the "
                   "compiled forward asks for, instead of preparing them in every timed forward")
    p.add_argument("--breakdown", action="store_true", help="after each model row, where its time went by kernel "
                   "kind (convfirst.cost.kernel_breakdown; needs CUPTI timing, i.e. a GPU)")


def _retrying(fn, batch: int, retry: bool):
    """timm's OOM retry: halve the batch until it fits (the row records the batch that ran)."""
    while True:
        try:
            return fn(batch)
        except Exception as e:  # XlaRuntimeError has no stable import path
            if not retry or "RESOURCE_EXHAUSTED" not in str(e) or batch == 1:
                raise
            print(f"  out of memory at batch {batch}; retrying at {batch // 2}", file=sys.stderr)
            batch //= 2


def main(args):
    from convfirst import benchmark
    from convfirst.models import model_spec
    from pallas_kernels.timing import Protocol, matmul_peak_tmacs

    names = [m for m in args.models.split(",") if m]
    for name in names:
        model_spec(name)  # unknown names fail here, before any GPU work
    impls = [i for i in args.impl.split(",") if i]
    dt = benchmark.compute_dtype(args.dtype)  # unknown names fail here, before any GPU work
    protocol = Protocol(warmup=args.warmup, iterations=args.iters)
    peak = None if args.no_matmul_peak else matmul_peak_tmacs(dt)
    if peak:
        print(f"measured matmul peak: {peak:.1f} TMAC/s ({args.dtype}, 8192^3)")
    sink = _RowSink(args.csv, args.jsonl, benchmark.COLUMNS)
    for name in names:
        for impl in impls:
            if not args.no_models:
                row = sink.add(_flag_outlier(_retrying(lambda b: benchmark.bench_model(
                    name, impl, batch=b, dtype=args.dtype, protocol=protocol, peak_matmul=peak,
                    fold_ahead=args.fold_ahead),
                    args.batch, not args.no_retry), args.dtype))
                if args.breakdown:
                    from convfirst.cost.kernel_breakdown import format_breakdown

                    print(format_breakdown(row) if row.get("per_kernel") else
                          "  (no breakdown: no per-kernel times without CUPTI, i.e. off the GPU)")
            if args.blocks:
                for prob, count in benchmark.block_problems(model_spec(name), args.batch):
                    sink.add(_flag_outlier(benchmark.bench_block(
                        prob, impl, dtype=args.dtype, protocol=protocol, peak_matmul=peak, model=name,
                        count=count), args.dtype))
    return 0


class _RowSink:
    """Prints each row and writes it to the CSV / JSONL files as soon as it is measured, so a run cut
    short (a timeout, an out-of-memory crash) keeps every row it finished."""

    def __init__(self, csv_path, jsonl_path, columns):
        self.csv_path, self.jsonl_path, self.columns = csv_path, jsonl_path, columns
        if csv_path:
            with open(csv_path, "w", newline="") as f:
                csv.DictWriter(f, fieldnames=columns).writeheader()

    def add(self, row: dict) -> dict:
        _print(row)
        if self.csv_path:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(row)
        if self.jsonl_path:
            with open(self.jsonl_path, "a") as f:
                f.write(json.dumps(row, default=str) + "\n")
        return row


def _flag_outlier(row: dict, dtype: str) -> dict:
    """Mark a row whose kernels show XLA's conv autotuner gone wrong (experiments/outliers.py): status
    'outlier' in the CSV and a warning. XLA caches its choice for the process, so only a fresh process
    helps; `convfirst reproduce` reruns such cells itself."""
    from experiments.outliers import outlier_reason

    reason = outlier_reason(row, dtype)
    if reason:
        print(f"  warning: {row['model']} {row['block'] or '(model)'} {row['impl']}: {reason.split(';')[0]}; "
              "this timing is not representative: rerun in a fresh process", file=sys.stderr)
        row = dict(row, status="outlier")
    return row


def _print(r):
    impl = r["impl"] + (f"->{r['resolved_impl']}" if r.get("resolved_impl") else "")
    if r.get("status") not in ("ok", "outlier"):
        print(f"{r['model']:18s} {r['block'] or '(model)':52s} {impl:16s} {r['status']}")
        return
    eff = r["eff_datasheet"]
    print(f"{r['model']:18s} {r['block'] or '(model)':52s} {impl:16s} {r['infer_step_time']:9.4f} ms "
          f"{r['infer_samples_per_sec']:10.0f} img/s {r['achieved_tmacs']:7.1f} TMAC/s "
          f"{100 * eff if eff else float('nan'):5.1f}% of datasheet  (wall {r['infer_wall_time']:.3f}, "
          f"pipelined {r['infer_pipelined_time']:.3f} ms)"
          + ("  [outlier]" if r["status"] == "outlier" else ""), flush=True)
