"""GPU probe: the ConvFirst grouped conv (k=3, group width 8, bf16 in/out, f32 accumulation) at
convfirst_tiny's stage shapes, several ways, under the one timing protocol: XLA/cuDNN NHWC (what
mosaic_mlp runs), XLA/cuDNN NCHW, the conv as 8 channel-broadcast depthwise convs (one XLA fusion),
the Triton grouped-conv kernel of pallas_layerwise, and cuDNN on the same conv with its weight widened
to group width 16 ... C (`widen_groups`: block-diagonal, zeros between the groups; more MACs, but
wide groups run on cuDNN's tensor-core engines). Decides what mosaic_mlp's conv should be.

    python scripts/probe_grouped_conv.py --batch 128 --out $OUT/probe_grouped_conv.json
"""
import argparse
import json

import jax
import jax.numpy as jnp

from pallas_kernels.common import mismatch
from pallas_kernels.convfirst_block.reference import grouped_conv, widen_groups
from pallas_kernels.layers.gconv import gconv
from pallas_kernels.timing import Protocol, time_call

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--out", required=True)
args = ap.parse_args()
GW, K, dt = 8, 3, jnp.bfloat16


def nchw(x, w):
    y = jax.lax.conv_general_dilated(
        jnp.transpose(x, (0, 3, 1, 2)), w.astype(x.dtype), (1, 1), "SAME",
        dimension_numbers=("NCHW", "HWIO", "NCHW"), feature_group_count=x.shape[-1] // GW,
        preferred_element_type=dt)
    return jnp.transpose(y, (0, 2, 3, 1))


def broadcast_depthwise(x, w):
    """t[.., o] = sum_j dw_conv(x[.., group(o)*8 + j], w[:, :, j, o]): 8 depthwise convs on
    channel-broadcast inputs, which XLA fuses into one loop over the output."""
    n, h, wd, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(n, h + 2, wd + 2, c // GW, GW)
    acc = jnp.zeros((n, h, wd, c // GW, GW), jnp.float32)
    wf = w.astype(dt).astype(jnp.float32).reshape(K, K, GW, c // GW, GW)  # (kh, kw, j, g, o)
    for dh in range(K):
        for dw in range(K):
            win = xp[:, dh:dh + h, dw:dw + wd].astype(jnp.float32)  # (n, h, w, g, i)
            acc = acc + jnp.einsum("nhwgj,jgo->nhwgo", win, wf[dh, dw], precision="highest")
    return acc.reshape(n, h, wd, c).astype(dt)


WAYS = {"cudnn_nhwc": lambda x, w, b: grouped_conv(x, w, GW, out_dtype=dt),
        "cudnn_nchw": lambda x, w, b: nchw(x, w),
        "broadcast_depthwise": lambda x, w, b: broadcast_depthwise(x, w),
        "triton_gconv": lambda x, w, b: gconv(x, w, b, group_width=GW)}
rows = []
print(jax.devices()[0].device_kind, flush=True)
for s, c in ((56, 64), (28, 128), (14, 256), (7, 512)):
    kx, kw = jax.random.split(jax.random.key(s))
    w = (jax.random.normal(kw, (K, K, GW, c)) / 8).astype(dt)
    b = jnp.zeros((c,), jnp.float32)
    x0 = jax.random.normal(kx, (args.batch, s, s, c)).astype(dt)
    with jax.default_matmul_precision("highest"):
        ref = grouped_conv(x0.astype(jnp.float32), w.astype(jnp.float32), GW)
    wide = {f"cudnn_widened_gw{g}": (lambda x, w, b, g=g, ww=widen_groups(w, GW, g): grouped_conv(x, ww, g, out_dtype=dt))
            for g in (16, 32, 64, 128, 256) if g <= c}
    for name, fn in {**WAYS, **wide}.items():
        f = lambda x, fn=fn: fn(x, w, b)  # noqa: E731
        try:
            wrong = mismatch(jax.jit(f)(x0), ref, dt, K * K * GW)
            t = time_call(f, lambda i: (jax.random.normal(jax.random.key(50 + i), x0.shape).astype(dt),),
                          protocol=Protocol(warmup=3, iterations=20))
        except Exception as e:  # noqa: BLE001
            print(f"{s}x{s}x{c} {name}: FAILED {type(e).__name__}: {str(e)[:200]}", flush=True)
            continue
        gbs = 2 * x0.size * 2 / (t.median_ms * 1e-3) / 1e9
        print(f"{s}x{s}x{c} {name:20s} {t.median_ms:.4f} ms  {gbs:6.0f} GB/s (x read + t write)  "
              f"{'WRONG ' + wrong if wrong else 'ok'}  {[k for k, _ in t.per_kernel or ()]}", flush=True)
        rows.append(dict(shape=f"{s}x{s}x{c}", way=name, ms=t.median_ms, wrong=wrong, kernels=t.per_kernel))
json.dump(dict(device=jax.devices()[0].device_kind, batch=args.batch, rows=rows), open(args.out, "w"), indent=1)
