"""`convfirst tune`: autotune the block implementations of models on this GPU and update the cache.

    convfirst tune --models convfirst_tiny,mbconvnet_b0 --batch 128 --dtype bf16 --max-configs 12
    convfirst tune --models convfirst_tiny --only 14x14x256     # retune the shapes whose label has this
    convfirst tune --models convfirst_tiny --impls mosaic_mlp   # retune one implementation; the cached
                                                                # entries keep the others' times
"""
from __future__ import annotations

import json


def add_arguments(p):
    p.add_argument("--models", required=True, help="comma-separated registered model names")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--max-configs", type=int, default=12, help="candidate tile configs per implementation")
    p.add_argument("--impls", default="", help="retune only these implementations (default: all registered); "
                   "the cached entries keep the other implementations' times")
    p.add_argument("--only", default="", help="tune only the block shapes whose label contains this text")


def main(args):
    import jax

    from convfirst.benchmark import block_problems, compute_dtype
    from convfirst.models import model_spec
    from pallas_kernels import autotune

    dt = compute_dtype(args.dtype)
    problems = {}  # distinct block shapes, first model that has each
    for name in args.models.split(","):
        for prob, _ in block_problems(model_spec(name), args.batch):
            problems.setdefault(prob, name)
    chosen = {p: n for p, n in problems.items() if args.only in p.label()}
    if not chosen:
        raise ValueError(f"no block shape of {args.models} has {args.only!r} in its label; they are: "
                         + ", ".join(p.label() for p in problems))
    if jax.default_backend() != "gpu":
        raise ValueError("tuning times kernels and needs a GPU (this host's backend is "
                         f"{jax.default_backend()})")
    impls = [i for i in args.impls.split(",") if i] or None
    for prob, name in chosen.items():
        print(f"{name}: {prob.label()}", flush=True)
        r = autotune.tune(prob, dtype=dt, impls=impls, max_configs=args.max_configs)
        path = autotune.write_entries([r], args.batch)  # each shape as it finishes: a cut run keeps it
        entry = json.loads(path.read_text())["entries"][r["_key"]][str(args.batch)]  # merged with --impls
        print(f"  best {entry['best_impl']}: " + ", ".join(f"{k} {v:.4f} ms" for k, v in entry["times_ms"].items()))
    print(f"wrote {len(chosen)} entries to {path}")
    return 0
