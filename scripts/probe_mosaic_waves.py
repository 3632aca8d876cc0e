"""GPU probe: does mosaic_mlp lose time to a partial last wave? The MLP kernel alone (C=256, hidden
1024, bf16) at row counts that fill whole waves of the H200's 132 SMs (128-row ping-pong programs,
one per SM: 16,896 rows a wave) and at convfirst_tiny's 14x14 stage at batch 128 (25,088 rows: 196
programs, 1.48 waves), for the ping-pong config and the one-warpgroup, two-program-cluster config
(64-row programs: 392 at batch 128, 2.97 waves). If 25,088 rows take as long as 33,792, the last
wave's idle SMs are worth balancing (run ZV: they are). Runs ZX and ZZ also timed a split tail
(commit d3672fe, since removed: slower, docs/kernels.md).

    python scripts/probe_mosaic_waves.py --out $OUT/probe_mosaic_waves.json [--configs pingpong --rows 8448,25088]
"""
import argparse
import json

import jax
import jax.numpy as jnp

from pallas_kernels.common import mismatch
from pallas_kernels.convfirst_block.mlp_mosaic import MosaicMLPConfig, heuristic, mlp_mosaic
from pallas_kernels.convfirst_block.reference import ACTIVATIONS
from pallas_kernels.timing import Protocol, time_call

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--configs", default="pingpong,one_wg_cluster2", help="which of the configs")
ap.add_argument("--rows", default="8448,16896,25088,33792,50688", help="row counts")
args = ap.parse_args()
C, HID, dt = 256, 1024, jnp.bfloat16
keys = jax.random.split(jax.random.key(0), 4)
w1 = (jax.random.normal(keys[0], (C, HID)) / 16).astype(dt)
w2 = (jax.random.normal(keys[1], (HID, C)) / 32).astype(dt)
b1, b2 = jax.random.normal(keys[2], (HID,)) / 8, jax.random.normal(keys[3], (C,)) / 8
configs = {"pingpong": heuristic(C, HID), "one_wg_cluster2": MosaicMLPConfig(64, 64, 2, True, 1, 2, True)}
configs = {name: configs[name] for name in args.configs.split(",")}
rows = []
print(jax.devices()[0].device_kind, {k: v.to_dict() for k, v in configs.items()}, flush=True)
for name, cfg in configs.items():
    for m in map(int, args.rows.split(",")):
        fn = lambda t, x, cfg=cfg: mlp_mosaic(t, x, w1, b1, w2, b2, act="silu", config=cfg)  # noqa: E731
        make = lambda i, m=m: tuple(jax.random.normal(jax.random.key(10 + 2 * i + j), (m, C)).astype(dt)  # noqa: E731
                                    for j in range(2))
        t0, x0 = make(0)
        with jax.default_matmul_precision("highest"):
            f32 = lambda a: a.astype(jnp.float32)  # noqa: E731
            ref = f32(ACTIVATIONS["silu"](f32(t0) @ f32(w1) + b1).astype(dt)) @ f32(w2) + b2 + f32(x0)
        wrong = mismatch(jax.jit(fn)(t0, x0), ref, dt, HID)
        t = time_call(fn, make, protocol=Protocol(warmup=3, iterations=20))
        kernel_ms = sum(ms for k, ms in (t.per_kernel or ()) if "mosaic" in k) or t.median_ms
        tmacs = 2 * m * C * HID / (kernel_ms * 1e-3) / 1e12
        print(f"{name:16s} M={m:6d} ({m / 16896:.2f} waves of 128-row programs)  kernel {kernel_ms * 1e3:7.1f} us  "
              f"{tmacs:6.1f} TMAC/s  {kernel_ms * 1e3 / (m / 16896):6.1f} us per 16,896 rows  "
              f"{'WRONG ' + wrong if wrong else 'ok'}", flush=True)
        rows.append(dict(config=name, rows=m, kernel_ms=kernel_ms, median_ms=t.median_ms, tmacs=tmacs, wrong=wrong))
json.dump(dict(device=jax.devices()[0].device_kind, configs={k: v.to_dict() for k, v in configs.items()},
               rows=rows), open(args.out, "w"), indent=1)
