"""Forward + backward of each distinct residual block of a model, per forward/backward implementation
pair, on one GPU (the block-level half of the fused-backward measurements; the training-step half
is scripts/bench_train_step.py --bwd_impl).

    python scripts/bench_fused_backward.py --model convfirst_tiny_ln --batch 128 --dtype bf16 \
        --pairs xla/xla,pallas_fused/xla,pallas_fused/pallas_fused --out benchmarks/results/fused_backward/blocks.json

Each row is `convfirst.benchmark.bench_block_train` (the same cells run through the experiment runner:
`convfirst reproduce ablations`, group "training"); `--sweep N` adds a backward kernel alone
(`--sweep_impl`, default pallas_fused) under its first N tile configs, the heuristic's first.
Timing: pallas_kernels.timing (CUPTI kernel sum, warm-up, median, inputs and cotangents rotated
past 4x L2). Synthetic inputs (benchmark only).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convfirst.benchmark import bench_block_train, block_problems, compute_dtype, environment  # noqa: E402
from convfirst.models import model_spec  # noqa: E402
from pallas_kernels import OPS  # noqa: E402
from pallas_kernels.timing import Protocol, time_call  # noqa: E402


def sweep_backward(problem, dtype, protocol: Protocol, n_configs: int, name: str) -> list[dict]:
    """Backward implementation `name` alone under its first `n_configs` autotuner candidates."""
    params = problem.make_params(jax.random.key(1))
    impl = OPS[problem.op].backwards[name]
    if impl.candidates is None:
        raise SystemExit(f"--sweep_impl {name}: no config space; kernels with one: "
                         + ", ".join(n for n, i in OPS[problem.op].backwards.items() if i.candidates))
    rows = []
    for cfg in impl.candidates(problem, params)[:n_configs]:
        def bwd(x, dy, cfg=cfg):
            return impl.fn(x, params, dy, config=cfg, **problem.static())

        def make(i):
            return problem.make_x(jax.random.key(10 + i), dtype), problem.make_x(jax.random.key(1000 + i), dtype)

        try:
            t = time_call(bwd, make, protocol=protocol)
            row = dict(block=problem.label(), bwd_impl=name, config=cfg.to_dict(), status="ok", bwd_ms=t.median_ms,
                       kernels=[(kname, ms) for kname, ms in (t.per_kernel or ())])
        except Exception as err:  # a config that fails to compile (registers, shared memory) is a result
            row = dict(block=problem.label(), bwd_impl=name, config=cfg.to_dict(),
                       status=f"failed: {type(err).__name__}: {err}"[:300])
        rows.append(row)
        print(f"  sweep {problem.label()} {name} {cfg}: {row.get('bwd_ms', row['status'])}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="convfirst_tiny_ln")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--pairs", default="xla/xla,pallas_fused/xla,pallas_fused/pallas_fused",
                   help="comma-separated forward/backward implementation pairs")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--sweep", type=int, default=0,
                   help="also time a backward kernel alone under this many tile configs per block")
    p.add_argument("--sweep_impl", default="pallas_fused", help="the backward implementation --sweep times")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    dtype = compute_dtype(args.dtype)
    protocol = Protocol(warmup=args.warmup, iterations=args.iters)
    pairs = [tuple(pair.split("/")) for pair in args.pairs.split(",")]
    rows = []
    for problem, count in block_problems(model_spec(args.model), args.batch):
        for impl, bwd_impl in pairs:
            row = bench_block_train(problem, impl, bwd_impl, dtype=args.dtype, protocol=protocol,
                                    model=args.model, count=count)
            rows.append(row)
            shown = (f"{row['infer_step_time']:.3f} ms  {row['achieved_tmacs']:.0f} TMAC/s" if row["status"] == "ok"
                     else row["status"])
            print(f"{problem.label()} x{count}  {impl}/{bwd_impl}: {shown}", flush=True)
    sweep = []
    if args.sweep:
        for problem, _ in block_problems(model_spec(args.model), args.batch):
            if OPS[problem.op].why_unsupported(args.sweep_impl, problem.make_x(jax.random.key(0), dtype),
                                               problem.make_params(jax.random.key(1)), jax.default_backend(),
                                               bwd=True, **problem.static()) is None:
                sweep += sweep_backward(problem, dtype, protocol, args.sweep, args.sweep_impl)
    report = dict(environment(args.dtype), command="python " + " ".join(
        [sys.argv[0]] + (argv if argv is not None else sys.argv[1:])), batch=args.batch,
        protocol=protocol.describe(), rows=rows, sweep=sweep)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
