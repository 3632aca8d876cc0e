"""Time the fused ConvFirst kernel over a slice of its config space on ConvFirst stage shapes, next to
the XLA baselines, with the tuner's protocol; check the fastest config against the reference.

    python scripts/sweep_fused_configs.py --batch 128 --shapes 56x64,28x128,14x256 --out $OUT/sweep.json

`--where flat` keeps flat-tile configs only (plus the heuristic); `--k 1` isolates the MLP from the
grouped conv. Results feed the heuristic in pallas_kernels/convfirst_block/configs.py.
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import OPS
from pallas_kernels.common import relative_l2
from pallas_kernels.convfirst_block import configs
from pallas_kernels.problems import BlockProblem
from pallas_kernels.timing import Protocol, time_call

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--shapes", default="56x64,28x128,14x256", help="HxC of square stages (hidden = 4C)")
ap.add_argument("--k", type=int, default=3)
ap.add_argument("--where", choices=("all", "flat"), default="flat")
ap.add_argument("--max-configs", type=int, default=24)
ap.add_argument("--impls", default="xla,xla_native", help="baselines timed next to the sweep")
ap.add_argument("--out", required=True)
args = ap.parse_args()

op = OPS["convfirst_block"]
protocol = Protocol(warmup=3, iterations=20)
dt = jnp.bfloat16
print(jax.devices()[0].device_kind, jax.__version__, protocol.describe(), flush=True)
rows = []


def save():  # after every row: a run cut short by its timeout keeps what it measured
    json.dump(dict(device=jax.devices()[0].device_kind, batch=args.batch, dtype="bfloat16", k=args.k,
                   protocol=protocol.describe(), rows=rows), open(args.out, "w"), indent=1)


for spec in args.shapes.split(","):
    s, c = map(int, spec.split("x"))
    prob = BlockProblem("convfirst_block", args.batch, s, s, c, 4 * c, kernel_size=args.k)
    params = prob.make_params(jax.random.key(1))
    st = prob.static()
    make = lambda i, prob=prob: (prob.make_x(jax.random.key(100 + i), dt),)  # noqa: E731
    for name in args.impls.split(","):
        t = time_call(lambda x, name=name: op(x, params, impl=name, **st), make, protocol=protocol)
        rows.append(dict(label=prob.label(), impl=name, ms=t.median_ms, kernels=t.per_kernel))
        print(f"{prob.label()} {name}: {t.median_ms:.4f} ms", flush=True)
    base = configs.heuristic(c, 4 * c, 8, s, s)
    space = [cfg for cfg in configs.candidates(c, 4 * c, 8, s, s)
             if args.where == "all" or cfg.flat_pixels or cfg == base][:args.max_configs]
    best = (float("inf"), None)
    for cfg in space:
        t0 = time.time()
        try:
            t = time_call(lambda x, cfg=cfg: op(x, params, impl="pallas_fused", config=cfg, **st), make,
                          protocol=protocol)
        except Exception as e:  # noqa: BLE001 - a config that fails to compile is reported, not fatal
            print(f"{prob.label()} {cfg}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
            rows.append(dict(label=prob.label(), impl="pallas_fused", config=cfg.to_dict(), error=str(e)[:500]))
            continue
        rows.append(dict(label=prob.label(), impl="pallas_fused", config=cfg.to_dict(), ms=t.median_ms,
                         compile_and_time_s=time.time() - t0))
        print(f"{prob.label()} {cfg}: {t.median_ms:.4f} ms", flush=True)
        save()
        best = min(best, (t.median_ms, cfg), key=lambda b: b[0])
    if best[1] is not None:
        x = prob.make_x(jax.random.key(2), dt)
        y = jax.jit(lambda x: op(x, params, impl="pallas_fused", config=best[1], **st))(x)
        ref = op.reference(x.astype(jnp.float32), params, **st)
        err = relative_l2(np.asarray(y, np.float32), np.asarray(ref, np.float32))
        rows.append(dict(label=prob.label(), best=best[1].to_dict(), ms=best[0], rel_l2=err))
        print(f"{prob.label()} BEST {best[1]}: {best[0]:.4f} ms rel_l2={err:.2e}", flush=True)
        save()
