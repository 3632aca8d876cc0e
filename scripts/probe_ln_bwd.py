"""GPU probe: the LayerNorm backward of the 'mosaic_mlp' block backward (ln_bwd_triton) against XLA's
autodiff of the same bf16 graph (z -> LayerNorm in f32 -> t in bf16; gradients of z, scale, bias and
the conv bias = sum of dz, which XLA sums after rounding dz to bf16: compared at bf16 tolerance), at
convfirst_tiny's stage shapes, over tile rows and warps, under the one timing protocol (CUPTI kernel
sum, rotated inputs, median).

    python scripts/probe_ln_bwd.py --batch 128 --out $OUT/probe_ln_bwd.json
"""
import argparse
import functools
import json

import jax
import jax.numpy as jnp

from pallas_kernels.common import mismatch
from pallas_kernels.convfirst_block import ln_bwd_triton
from pallas_kernels.convfirst_block.reference import layer_norm
from pallas_kernels.timing import Protocol, time_call

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--out", required=True)
ap.add_argument("--iterations", type=int, default=30)
args = ap.parse_args()
BF16, F32, EPS = jnp.bfloat16, jnp.float32, 1e-6


def xla(z, dt, scale, bias):
    _, vjp = jax.vjp(lambda a, s, b: layer_norm(a.astype(F32), s, b, EPS).astype(BF16), z, scale, bias)
    dz, ds, db = vjp(dt)
    return dz, ds, db, dz.sum(range(dz.ndim - 1), dtype=F32)


rows_out = []
for s, c in [(56, 64), (28, 128), (14, 256), (7, 512)]:
    shape = (args.batch, s, s, c)
    keys = jax.random.split(jax.random.key(c), 4)
    scale = 1 + 0.1 * jax.random.normal(keys[2], (c,))
    bias = 0.1 * jax.random.normal(keys[3], (c,))

    def make_args(i, shape=shape, scale=scale, bias=bias):
        k = jax.random.fold_in(jax.random.key(i), shape[-1])
        return ((2 * jax.random.normal(k, shape) + 0.5).astype(BF16),
                jax.random.normal(jax.random.fold_in(k, 1), shape).astype(BF16), scale, bias)

    z, dt, _, _ = make_args(0)
    ref = jax.jit(xla)(z, dt, scale, bias)
    t = time_call(xla, make_args, protocol=Protocol(warmup=2, iterations=args.iterations))
    row = {"shape": list(shape), "xla_ms": t.median_ms, "xla_kernels": len(t.per_kernel or ())}
    print(f"{shape}: xla {t.median_ms * 1e3:.1f} us in {row['xla_kernels']} kernels", flush=True)
    for bm in (16, 32, 64, 128, 256):
        if not 1024 <= bm * c <= 32768:
            continue
        for warps in (4, 8):
            fn = functools.partial(ln_bwd_triton.layer_norm_bwd, eps=EPS, rows=bm, num_warps=warps)
            got = jax.jit(lambda z, dt, s, b, fn=fn: fn(z, dt, s))(z, dt, scale, bias)
            wrong = [m for g, r, d in zip(got, ref, (BF16, F32, F32, BF16)) if (m := mismatch(g, r, d, c))]
            k = time_call(lambda z, dt, s, b, fn=fn: fn(z, dt, s), make_args,
                          protocol=Protocol(warmup=2, iterations=args.iterations))
            row[f"rows{bm}_warps{warps}_ms"] = k.median_ms
            print(f"  rows {bm:3d} warps {warps}: {k.median_ms * 1e3:.1f} us{' WRONG ' + str(wrong) if wrong else ''}",
                  flush=True)
    rows_out.append(row)
    json.dump({"device": jax.devices()[0].device_kind, "batch": args.batch, "dtype": "bfloat16",
               "protocol": Protocol(warmup=2, iterations=args.iterations).describe(), "rows": rows_out},
              open(args.out, "w"), indent=1)  # after every shape: a cut run keeps what it measured
