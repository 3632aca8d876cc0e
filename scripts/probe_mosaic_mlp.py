"""GPU probe of mosaic_mlp's config space at convfirst_tiny's stage shapes: every valid config of a
grid (warpgroups x cluster x h_regs x delay_release x pipeline depth x residual buffer x ping-pong),
each axis narrowed by its option, timed under
the one protocol, checked against the reference, with the per-kernel split (XLA conv vs the MLP
kernel). Its results decide the autotuner's candidate space and the heuristic.

    python scripts/probe_mosaic_mlp.py --batch 128 --out $OUT/probe_mosaic_mlp.json [--channels 64,128,256]
        [--warpgroups 2 --pingpong 1,0 --h-regs 1 --delay-release 0]
"""
import argparse
import itertools
import json
import time

import jax
import jax.numpy as jnp

from pallas_kernels import OPS
from pallas_kernels.common import mismatch
from pallas_kernels.convfirst_block.mlp_mosaic import SMEM_BYTES, MosaicMLPConfig, _config_reason
from pallas_kernels.problems import BlockProblem
from pallas_kernels.timing import Protocol, time_call

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--channels", default="256,128,64")
ap.add_argument("--block-h", default="64")
ap.add_argument("--warpgroups", default="2,1")
ap.add_argument("--h-regs", default="1,0")
ap.add_argument("--delay-release", default="1,0")
ap.add_argument("--pingpong", default="1,0", help="with two warpgroups only (other configs are skipped)")
ap.add_argument("--seconds-per-shape", type=float, default=150)
ap.add_argument("--out", required=True)
args = ap.parse_args()

STAGES = {64: 56, 128: 28, 256: 14}  # convfirst_tiny: C -> H = W
protocol = Protocol(warmup=2, iterations=10)
dt = jnp.bfloat16
op = OPS["convfirst_block"]
rows = []
print(jax.devices()[0].device_kind, jax.__version__, flush=True)
for c in map(int, args.channels.split(",")):
    prob = BlockProblem("convfirst_block", args.batch, STAGES[c], STAGES[c], c, 4 * c)
    params, static = prob.make_params(jax.random.key(1)), prob.static()
    x0 = prob.make_x(jax.random.key(2), dt)
    with jax.default_matmul_precision("highest"):
        ref = op.reference(x0.astype(jnp.float32), params, **static)
    # the new mechanisms first, so a cut budget drops the old single-warpgroup configs
    ints = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    grid = itertools.product(ints(args.warpgroups), (2, 1), map(bool, ints(args.h_regs)), ints(args.delay_release),
                             ints(args.block_h), (2, 3, 4), (False, True), map(bool, ints(args.pingpong)))
    cfgs = [MosaicMLPConfig(64, bh, s, xb, wgs, cl, hr, dr, pp) for wgs, cl, hr, dr, bh, s, xb, pp in grid]
    cfgs = [cfg for cfg in cfgs if _config_reason(cfg, c, 4 * c) is None]
    print(f"{prob.label()}: {len(cfgs)} configs (shared memory <= {SMEM_BYTES})", flush=True)
    start = time.time()
    for cfg in cfgs:
        if time.time() - start > args.seconds_per_shape:
            print("  time budget for this shape spent", flush=True)
            break
        fn = lambda x, cfg=cfg: op(x, params, impl="mosaic_mlp", config=cfg, **static)  # noqa: E731
        try:
            wrong = mismatch(jax.jit(fn)(x0), ref, dt, prob.accumulation_depth())
            t = time_call(fn, lambda i: (prob.make_x(jax.random.key(100 + i), dt),), protocol=protocol)
        except Exception as e:  # noqa: BLE001 - a config that fails to compile is reported, not fatal
            print(f"  {cfg}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
            rows.append(dict(label=prob.label(), config=cfg.to_dict(), error=f"{type(e).__name__}: {str(e)[:300]}"))
            continue
        eff = prob.macs() / (t.median_ms * 1e-3) / 494.7e12
        split = " + ".join(f"{n[:18]} {ms:.4f}" for n, ms in (t.per_kernel or ()))
        print(f"  {t.median_ms:.4f} ms {100 * eff:5.1f}% {'WRONG ' + wrong if wrong else 'ok'}  "
              f"{cfg}  [{split}]", flush=True)
        rows.append(dict(label=prob.label(), config=cfg.to_dict(), ms=t.median_ms, wall_ms=t.wall_median_ms,
                         efficiency_datasheet=eff, wrong=wrong, kernels=t.per_kernel))
    ok = [r for r in rows if r["label"] == prob.label() and "ms" in r and not r["wrong"]]
    if ok:
        best = min(ok, key=lambda r: r["ms"])
        print(f"  best {best['ms']:.4f} ms: {best['config']}", flush=True)
    json.dump(dict(device=jax.devices()[0].device_kind, batch=args.batch, dtype="bfloat16",  # each shape as it ends
                   protocol=protocol.describe(), rows=rows), open(args.out, "w"), indent=1, default=str)
