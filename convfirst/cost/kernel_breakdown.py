"""Where a measured forward's time goes, by kernel kind, from the CUPTI kernel list that `convfirst
bench` records per row (`per_kernel` in its JSONL): our block kernels, cuDNN convolutions, GEMMs and
XLA's elementwise/reduction fusions. Kernel names are the only evidence, so the kinds are name
patterns (listed in KINDS, first match wins).

    python -m convfirst.cost.kernel_breakdown benchmarks/results/mosaic_mlp/bench_models_h200.jsonl \
        [--model convfirst_tiny] [--impl auto] [--top 3]
"""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict

KINDS = (  # (kind, pattern on the kernel name)
    ("our kernels (Pallas)", r"mosaic_gpu|convfirst_fused|mbconv_fused|convfirst_bwd|pallas|^gconv_k|^gemm_\d"),
    ("cuDNN conv, generic engine", r"convolve_common_engine"),
    ("cuDNN conv", r"fprop|dgrad|wgrad|conv2d|convolution|convolve"),  # before GEMM: implicit-GEMM convs
    ("GEMM (cuBLAS/XLA)", r"gemm|nvjet|cutlass|matmul|_dot"),
    ("XLA fusion (elementwise/reduce/transpose)", r"fusion|wrapped_|transpose|reduce|copy"),
)


def kind_of(kernel_name: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, kernel_name, re.IGNORECASE):
            return kind
    return "other"


def breakdown(per_kernel) -> list[dict]:
    """[(name, ms), ...] -> one row per kind, largest first: ms, share of the total, kernel count and
    the kind's costliest kernel names."""
    total = sum(ms for _, ms in per_kernel) or 1.0
    ms_by, names_by = defaultdict(float), defaultdict(lambda: defaultdict(float))
    for name, ms in per_kernel:
        kind = kind_of(name)
        ms_by[kind] += ms
        names_by[kind][re.sub(r"_+\d+$", "", name)] += ms  # XLA numbers each fusion instance
    return [dict(kind=k, ms=ms, share=ms / total, kernels=sum(1 for n, _ in per_kernel if kind_of(n) == k),
                 top=sorted(names_by[k].items(), key=lambda kv: -kv[1]))
            for k, ms in sorted(ms_by.items(), key=lambda kv: -kv[1])]


def format_breakdown(row: dict, top: int = 2) -> str:
    """The kinds, largest first, under a header with the kernel count and, where the row has them, the
    wall-clock times: kernel time against wall clock is what the launch gaps cost."""
    walls = [f"{label} {row[key]:.3f} ms" for label, key in (("wall", "infer_wall_time"),
                                                             ("pipelined", "infer_pipelined_time"))
             if row.get(key)]
    lines = [f"{row['model']} impl={row['impl']}: {sum(ms for _, ms in row['per_kernel']):.3f} ms of kernels "
             f"in {len(row['per_kernel'])} launches{''.join('; ' + w for w in walls)} "
             f"({row.get('device', '?')}, batch {row.get('infer_batch_size', '?')}, {row.get('dtype', '?')})"]
    for b in breakdown(row["per_kernel"]):
        names = "; ".join(f"{n[:48]} {ms:.3f}" for n, ms in b["top"][:top])
        lines.append(f"  {b['ms']:7.3f} ms {100 * b['share']:5.1f} %  x{b['kernels']:<4d} {b['kind']:42s} {names}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("jsonl", help="a `convfirst bench --jsonl` file")
    p.add_argument("--model", default="")
    p.add_argument("--impl", default="")
    p.add_argument("--top", type=int, default=2, help="costliest kernel names shown per kind")
    args = p.parse_args(argv)
    rows = [json.loads(line) for line in open(args.jsonl) if line.strip()]
    rows = [r for r in rows if r.get("per_kernel") and args.model in (r["model"], "")
            and args.impl in (r["impl"], "") and r.get("kind", "model") == "model"]
    if not rows:
        raise SystemExit(f"no model row with a per_kernel list in {args.jsonl} matches --model {args.model!r} "
                         f"--impl {args.impl!r} (CPU runs have none: CUPTI timing only)")
    print("\n\n".join(format_breakdown(r, args.top) for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
