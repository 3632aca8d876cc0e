"""Backward of the per-pixel LayerNorm in one Pallas (Triton backend) kernel: the norm step of the
'mosaic_mlp' backward.

    t  = LN(z) * s + b,  z = gconv(x) + b_conv        (forward, z and t in x.dtype, statistics in f32)
    dz = rstd * (g - mean_c(g) - zhat * mean_c(g * zhat)),  g = dt * s
    ds = sum_p dt * zhat,  db = sum_p dt,  db_conv = sum_p dz

One program per tile of pixel rows reads z and dt once, recomputes the row statistics in float32,
writes dz and one partial column sum per tile for ds, db and db_conv (added by XLA in a fixed
order: deterministic). Why: XLA's autodiff of the same graph ran as 5-7 kernels per block that
recompute the statistics three times and write the float32 product dt * zhat to HBM before reducing
it (convfirst_tiny_ln step, H200, run ZP: ~60 us per 14x14x256 block, 2-3x the traffic of one pass).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels.common import interpret_mode, is_pow2, pixel_rows



MAX_C = 1024  # whole rows in registers: 16-row tiles at C=2048 are 32K elements (ZQ: 14-16x slower with 4 warps)


def reason(c: int) -> str | None:
    """None when the kernel runs C channels (Triton blocks need a power of two), else why not."""
    if not is_pow2(c) or not 16 <= c <= MAX_C:
        return f"C={c} must be a power of two in [16, {MAX_C}] (Triton block shape, whole rows in registers)"
    return None


def block_rows(c: int) -> int:
    """Rows per tile: 64 up to C=128, then 8192 // C (z and dt tiles of 16 KiB). The fastest or within
    5 % of it at each of convfirst_tiny's stage shapes with 4 warps (H200, batch 128, run ZQ:
    scripts/probe_ln_bwd.py); 8192 // C at C=64 (128 rows) was 23 % slower."""
    return 64 if c <= 128 else max(16, 8192 // c)


def row_stats(z, *, c: int, eps: float):
    """(zhat, rstd) of float32 rows z (tile, C) inside a kernel: the forward's normalization."""
    centered = z - (z.sum(axis=1) / c)[:, None]
    rstd = jax.lax.rsqrt((centered * centered).sum(axis=1) / c + eps)
    return centered * rstd[:, None], rstd


def row_grad(g, zhat, rstd, *, c: int):
    """dz from g = dt * scale, rows (tile, C) inside a kernel (the module docstring's formula)."""
    return rstd[:, None] * (g - g.sum(axis=1)[:, None] / c - zhat * ((g * zhat).sum(axis=1) / c)[:, None])


def _kernel(z_ref, dt_ref, s_ref, dz_ref, ds_ref, db_ref, dbc_ref, *, c: int, eps: float):
    f32 = jnp.float32
    z, dt = z_ref[...].astype(f32), dt_ref[...].astype(f32)
    zhat, rstd = row_stats(z, c=c, eps=eps)
    dz = row_grad(dt * s_ref[...][None, :], zhat, rstd, c=c)
    dz_ref[...] = dz.astype(dz_ref.dtype)
    ds_ref[...] = (dt * zhat).sum(axis=0)
    db_ref[...] = dt.sum(axis=0)
    dbc_ref[...] = dz.sum(axis=0)


def layer_norm_bwd(z, dt, scale, *, eps: float, rows: int | None = None, num_warps: int = 4):
    """(dz in z.dtype, ds, db, db_conv in float32) for z, dt of shape (..., C); see the module docstring.
    dt is read in z.dtype (the block backward's t and its gradient are in x.dtype).
    `rows` per tile (a power of two; default `block_rows(C)`). Rows are zero-padded to a whole tile
    where needed: a padded row has dt = 0 and adds nothing."""
    c = z.shape[-1]
    bm = rows or block_rows(c)
    if (why := reason(c)) is not None or not is_pow2(bm):
        raise ValueError(f"layer_norm_bwd: {why or f'rows={bm} must be a power of two'}")
    m = z.size // c
    z2, dt2 = pixel_rows(z, bm), pixel_rows(dt.astype(z.dtype), bm)
    tiles = z2.shape[0] // bm
    tile, vec = pl.BlockSpec((bm, c), lambda i: (i, 0)), pl.BlockSpec((None, c), lambda i: (i, 0))
    f32 = jnp.float32
    dz, ds, db, dbc = pl.pallas_call(
        functools.partial(_kernel, c=c, eps=eps),
        out_shape=(jax.ShapeDtypeStruct(z2.shape, z.dtype),) + (jax.ShapeDtypeStruct((tiles, c), f32),) * 3,
        grid=(tiles,),
        in_specs=[tile, tile, pl.BlockSpec((c,), lambda i: (0,))],
        out_specs=(tile, vec, vec, vec),
        compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=1),
        cost_estimate=pl.CostEstimate(flops=12 * z2.size, transcendentals=tiles * bm,
                                      bytes_accessed=3 * z2.size * z.dtype.itemsize),
        interpret=interpret_mode(),
        name=f"layer_norm_bwd_c{c}",
    )(z2, dt2, scale.astype(f32))
    return dz[:m].reshape(z.shape), ds.sum(0), db.sum(0), dbc.sum(0)
