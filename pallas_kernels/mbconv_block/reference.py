"""Plain-JAX reference of the MBConv block op (inference form, BatchNorm folded).

    h = act(x @ w_expand + b_expand)                      # only when w_expand is not None (E != 1)
    h = act(grouped_conv_kxk(h, w_conv, stride) + b_conv)  # group width G (1 = depthwise)
    h = h * sigmoid(se_expand(act(se_reduce(mean_hw(h)))))   # squeeze-excite, only when se is given
    y = h @ w_project + b_project  (+ x if residual)

Precision as in the ConvFirst op: operands in x.dtype, f32 accumulation and epilogues;
`precise=False` ('xla_native') keeps the intermediates in x.dtype, squeeze-excite statistics in f32.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pallas_kernels.convfirst_block.reference import activation, dense, grouped_conv


class SqueezeExcite(NamedTuple):
    w_reduce: jax.Array  # (M, S)
    b_reduce: jax.Array  # (S,)
    w_expand: jax.Array  # (S, M)
    b_expand: jax.Array  # (M,)


class MBConvParams(NamedTuple):
    w_expand: jax.Array | None  # (C, M), None when the expansion ratio is 1
    b_expand: jax.Array | None  # (M,)
    w_conv: jax.Array  # (k, k, G, M)
    b_conv: jax.Array  # (M,)
    w_project: jax.Array  # (M, Cout)
    b_project: jax.Array  # (Cout,)
    se: SqueezeExcite | None = None


def squeeze_excite(h, se: SqueezeExcite, f):
    """h * sigmoid(se_expand(f(se_reduce(mean_hw(h))))) in float32 (h is f32 NHWC)."""
    s = h.mean((1, 2))
    s = f(s @ se.w_reduce.astype(jnp.float32) + se.b_reduce.astype(jnp.float32))
    s = jax.nn.sigmoid(s @ se.w_expand.astype(jnp.float32) + se.b_expand.astype(jnp.float32))
    return h * s[:, None, None, :]


def mbconv_block_reference(x, p: MBConvParams, *, group_width: int = 1, stride: int = 1,
                           act: str = "silu", residual: bool = True, precise: bool = True):
    dtype = x.dtype
    mid = jnp.float32 if precise else dtype  # intermediates (see the ConvFirst reference)
    f = activation(act)
    h = x if p.w_expand is None else f(dense(x, p.w_expand, p.b_expand, mid)).astype(dtype)
    h = f(grouped_conv(h, p.w_conv, group_width, stride, out_dtype=mid) + p.b_conv.astype(mid))
    if p.se is not None:
        h = squeeze_excite(h.astype(jnp.float32), p.se, f).astype(mid)
    y = dense(h.astype(dtype), p.w_project, p.b_project, mid)
    if residual:
        y = y + x.astype(mid)
    return y.astype(dtype)
