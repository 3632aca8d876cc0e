"""1x1 conv as a GEMM (Pallas, Triton backend) with a fused epilogue: act(x @ w + b) [+ residual].

Rows are pixels (M = N*H*W), so a layer-wise block is GEMMs around one grouped conv. Real channel
counts (24, 40, 80, ...) are handled by power-of-two tiles with masked loads/stores; the weights are
zero-padded on the host, so padded K rows and N columns contribute nothing. Operands stay in
x.dtype with f32 accumulation; bias, activation and residual are applied in f32, one store in
x.dtype. Activations come from common.kernel_activation; exact GELU uses a polynomial erf
(|error| < 1.5e-7, Triton has no erf primitive).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels.common import dtype_reason, interpret_mode, kernel_activation, pad_axis, store_rows
from pallas_kernels.layers.configs import GemmConfig, gemm_heuristic
from pallas_kernels.registry import UnsupportedError


def _kernel(x_ref, w_ref, b_ref, *rest, m, k, n, cfg: GemmConfig, act: str, has_residual: bool):
    r_ref, o_ref = rest if has_residual else (None, *rest)
    bm, bn, bk = cfg.block_m, cfg.block_n, cfg.block_k
    f32 = jnp.float32
    col0 = pl.program_id(0) * bn  # read outside the loop: interpret mode cannot see it inside
    cols = col0 + lax.iota(jnp.int32, bn)
    rows = pl.program_id(1) * bm + lax.iota(jnp.int32, bm)
    row_ok = rows < m
    rows_in = jnp.minimum(rows, m - 1)  # out-of-range rows re-read the last row; never stored
    # Column indices stay unclamped (masked instead): a min() would hide their contiguity from
    # Triton and turn 16-byte vector loads into scalar ones. Masked lanes are never dereferenced.

    def step(i, acc):
        ks = i * bk + lax.iota(jnp.int32, bk)
        a_ref = x_ref.at[rows_in[:, None], ks[None, :]]
        if k % bk:
            a = pltriton.load(a_ref, mask=jnp.broadcast_to((ks < k)[None, :], (bm, bk)), other=0.0)
        else:
            a = a_ref[...]
        w = w_ref[pl.ds(i * bk, bk), pl.ds(col0, bn)]
        return acc + jnp.dot(a, w, preferred_element_type=f32)

    acc = lax.fori_loop(0, pl.cdiv(k, bk), step, jnp.zeros((bm, bn), f32))
    y = kernel_activation(act)(acc + b_ref[pl.ds(col0, bn)][None, :])
    col_ok = jnp.broadcast_to((cols < n)[None, :], (bm, bn))
    if has_residual:
        res = r_ref.at[rows_in[:, None], cols[None, :]]
        y = y + pltriton.load(res, mask=col_ok, other=0.0).astype(f32)
    dst = o_ref.at[store_rows(rows, row_ok, m)[:, None], cols[None, :]]
    pltriton.store(dst, y.astype(o_ref.dtype), mask=row_ok[:, None] & col_ok)


def gemm(x, w, b, *, act: str = "none", residual=None, config: GemmConfig | None = None):
    """act(x @ w + b) [+ residual] over the last axis of x: (..., K) @ (K, N) -> (..., N) in x.dtype."""
    if (reason := dtype_reason(x)) is not None:
        raise UnsupportedError(f"gemm: {reason}")
    kernel_activation(act)  # unknown names fail here with the valid choices
    k, n = w.shape
    if x.shape[-1] != k or b.shape != (n,):
        raise ValueError(f"gemm: x {x.shape}, w {w.shape}, b {b.shape} do not match")
    if residual is not None and residual.shape != (*x.shape[:-1], n):
        raise ValueError(f"gemm: residual {residual.shape} must have shape {(*x.shape[:-1], n)}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    cfg = config or gemm_heuristic(m, k, n)
    kp, np_ = pl.cdiv(k, cfg.block_k) * cfg.block_k, pl.cdiv(n, cfg.block_n) * cfg.block_n
    wp = pad_axis(pad_axis(w.astype(x.dtype), 0, kp), 1, np_)
    bp = pad_axis(b.astype(jnp.float32), 0, np_)
    operands = [x2, wp, bp] + ([residual.reshape(m, n)] if residual is not None else [])
    kernel = functools.partial(_kernel, m=m, k=k, n=n, cfg=cfg, act=act,
                               has_residual=residual is not None)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((m, n), x.dtype),
        grid=(np_ // cfg.block_n, pl.cdiv(m, cfg.block_m)),  # N tiles fastest: they share x rows
        compiler_params=pltriton.CompilerParams(num_warps=cfg.num_warps, num_stages=cfg.num_stages),
        cost_estimate=pl.CostEstimate(flops=2 * m * k * n, transcendentals=m * n if act != "none" else 0,
                                      bytes_accessed=x.dtype.itemsize * (m * k + k * n + m * n * (
                                          2 if residual is not None else 1))),
        interpret=interpret_mode(),
        name=f"gemm_{k}x{n}_{act}",
    )(*operands)
    return y.reshape(*lead, n)
