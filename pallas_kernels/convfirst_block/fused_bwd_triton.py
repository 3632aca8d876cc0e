"""Fused backward of the ConvFirst block (Pallas, Triton backend): training with block fusion,
the expanded (hidden) activation is never stored, neither in the forward nor in the backward.

The forward saves x only. The backward recomputes what it needs, in C-wide tensors:
1. t = gconv(x) + b_conv with the Pallas grouped-conv kernel, float32 out.
2. `_dgrad_kernel`, one program per tile of pixels, the hidden width streamed in chunks:
   n = LN(t); pre = n @ W1 + b1; dh = dy @ W2^T; dpre = dh * act'(pre); dn += dpre @ W1^T;
   then the LayerNorm backward -> dt (stored in x.dtype), n (stored in x.dtype for step 3) and
   per-tile partial sums of db_project (dy), d ln_scale, d ln_bias and db_conv (dt).
3. `_wgrad_kernel`, one program per (hidden chunk, pixel range): the weight-gradient GEMMs with the
   pixels as K, accumulated in registers: dW1[:, j] += n^T dpre_j, dW2[j, :] += act(pre_j)^T dy,
   db1[j] += sum dpre_j (recomputing pre_j and dh_j for its chunk), one partial per range.
4. dx = [dy +] gconv(dt) with the conv weights flipped and transposed within each group (the same
   Pallas conv kernel); dW_conv is XLA's convolution weight gradient of x and dt (k*k*G*C weights).
Partial sums are added in a fixed order by XLA (deterministic; no atomics).

HBM traffic per pixel: x, t, n, dt, dy, dx (C channels each) and weight-sized partials; the hidden
activation (E*C per pixel) only exists in registers, one chunk at a time. The price is recompute:
the MLP runs 7 GEMMs (expand twice, dy @ W2^T twice, dn, two weight gradients) where autodiff of a
saved activation runs 4.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels.common import interpret_mode, is_pow2, kernel_activation, store_rows
from pallas_kernels.convfirst_block import configs, fused_triton
from pallas_kernels.convfirst_block.ln_bwd_triton import row_grad, row_stats
from pallas_kernels.convfirst_block.reference import ConvFirstParams, grouped_conv
from pallas_kernels.layers.gconv import gconv, gconv_reason
from pallas_kernels.registry import UnsupportedError

H100_SMS = 132
T_TRANSPOSED = (((0,), (0,)), ((), ()))  # dot_general: a^T @ b


def check(x, params: ConvFirstParams, *, platform=None, group_width: int, act: str, **static) -> str | None:
    """None when the fused backward supports this call, else why not."""
    if (reason := fused_triton.check(x, params, group_width=group_width, act=act)) is not None:
        return reason
    return gconv_reason(x.shape, params.w_conv.shape, group_width)


def _config_reason(cfg: configs.BwdConfig, c: int, hidden: int) -> str | None:
    for name in ("block_pixels", "hidden_chunk", "wgrad_chunk", "wgrad_pixels"):
        value = getattr(cfg, name)
        if value < 16 or not is_pow2(value):
            return f"{name}={value} must be a power of two >= 16"
    if hidden % cfg.hidden_chunk or hidden % cfg.wgrad_chunk:
        return f"hidden_chunk {cfg.hidden_chunk} and wgrad_chunk {cfg.wgrad_chunk} must divide hidden={hidden}"
    if cfg.wgrad_splits < 0:
        return "wgrad_splits must be >= 0 (0: heuristic)"
    return None


def transposed_conv_weights(w_conv, group_width: int):
    """Weights of the 'same' conv that computes a grouped conv's input gradient: taps flipped, input
    and output channels swapped within each group. (k, k, G, C) HWIO -> (k, k, G, C)."""
    k, _, g, c = w_conv.shape
    w = w_conv.reshape(k, k, g, c // g, g)  # [ky, kx, i, group, o]
    return jnp.flip(w.transpose(0, 1, 4, 3, 2).reshape(k, k, g, c), axis=(0, 1))


def _normalize(t, lns_ref, lnb_ref, *, c: int, layer_norm: bool, ln_eps: float):
    """(n, zhat, inv): the LayerNorm of the forward, recomputed in float32 (identity without LN)."""
    if not layer_norm:
        return t, None, None
    zhat, inv = row_stats(t, c=c, eps=ln_eps)
    return zhat * lns_ref[...][None, :] + lnb_ref[...][None, :], zhat, inv


def _act_and_grad(act: str, pre):
    """act(pre) and act'(pre) in float32 from the kernel activation (forward-mode derivative)."""
    return jax.jvp(kernel_activation(act), (pre,), (jnp.ones_like(pre),))


def _load_rows(ref, rows_in, ch):
    return ref.at[rows_in[:, None], ch[None, :]][...]


def _dgrad_kernel(t_ref, dy_ref, lns_ref, lnb_ref, w1_ref, b1_ref, w1t_ref, w2t_ref,
                  dt_ref, n_ref, db2_ref, dlns_ref, dlnb_ref, dbc_ref, *, m, c, hidden, cfg, act, layer_norm,
                  ln_eps):
    bp, hc = cfg.block_pixels, cfg.hidden_chunk
    f32, dtype = jnp.float32, dy_ref.dtype
    rows = pl.program_id(0) * bp + lax.iota(jnp.int32, bp)
    ok = rows < m
    rows_in = jnp.minimum(rows, m - 1)  # rows past the end re-read the last one, with dy = 0
    ch = lax.iota(jnp.int32, c)
    dy = jnp.where(ok[:, None], _load_rows(dy_ref, rows_in, ch), 0).astype(dtype)
    n, zhat, inv = _normalize(_load_rows(t_ref, rows_in, ch), lns_ref, lnb_ref, c=c, layer_norm=layer_norm,
                              ln_eps=ln_eps)
    n = n.astype(dtype)

    def body(e, dn):
        hs = pl.ds(e * hc, hc)
        pre = jnp.dot(n, w1_ref[:, hs], preferred_element_type=f32) + b1_ref[hs][None, :]
        _, dact = _act_and_grad(act, pre)
        dpre = jnp.dot(dy, w2t_ref[:, hs], preferred_element_type=f32) * dact
        return dn + jnp.dot(dpre.astype(dtype), w1t_ref[hs, :], preferred_element_type=f32)

    dn = lax.fori_loop(0, hidden // hc, body, jnp.zeros((bp, c), f32))
    if layer_norm:
        dt = row_grad(dn * lns_ref[...][None, :], zhat, inv, c=c)
        dlns_ref[...] = (dn * zhat).sum(axis=0)
        dlnb_ref[...] = dn.sum(axis=0)
    else:
        dt = dn
        dlns_ref[...] = jnp.zeros((c,), f32)
        dlnb_ref[...] = jnp.zeros((c,), f32)
    db2_ref[...] = dy.astype(f32).sum(axis=0)
    dbc_ref[...] = dt.sum(axis=0)
    dst, mask = store_rows(rows, ok, m)[:, None], jnp.broadcast_to(ok[:, None], (bp, c))
    pltriton.store(dt_ref.at[dst, ch[None, :]], dt.astype(dt_ref.dtype), mask=mask)
    pltriton.store(n_ref.at[dst, ch[None, :]], n, mask=mask)


def _wgrad_kernel(n_ref, dy_ref, w1_ref, b1_ref, w2t_ref, dw1_ref, dw2_ref, db1_ref, *, m, c, cfg, steps, act):
    bp, hc = cfg.wgrad_pixels, cfg.wgrad_chunk
    f32, dtype = jnp.float32, dy_ref.dtype
    hs = pl.ds(pl.program_id(0) * hc, hc)
    first = pl.program_id(1) * steps * bp  # program ids are read outside the loop (interpret mode)
    ch = lax.iota(jnp.int32, c)
    w1, b1, w2t = w1_ref[:, hs], b1_ref[hs], w2t_ref[:, hs]

    def step(i, acc):
        acc1, acc2, accb = acc
        rows = first + i * bp + lax.iota(jnp.int32, bp)
        ok = rows < m
        rows_in = jnp.minimum(rows, m - 1)
        dy = jnp.where(ok[:, None], _load_rows(dy_ref, rows_in, ch), 0).astype(dtype)
        n = _load_rows(n_ref, rows_in, ch)
        pre = jnp.dot(n, w1, preferred_element_type=f32) + b1[None, :]
        a, dact = _act_and_grad(act, pre)
        dpre = jnp.dot(dy, w2t, preferred_element_type=f32) * dact
        acc1 = acc1 + lax.dot_general(n, dpre.astype(dtype), T_TRANSPOSED, preferred_element_type=f32)
        acc2 = acc2 + lax.dot_general(a.astype(dtype), dy, T_TRANSPOSED, preferred_element_type=f32)
        return acc1, acc2, accb + dpre.sum(axis=0)

    acc1, acc2, accb = lax.fori_loop(0, steps, step, (jnp.zeros((c, hc), f32), jnp.zeros((hc, c), f32),
                                                      jnp.zeros((hc,), f32)))
    dw1_ref[...] = acc1
    dw2_ref[...] = acc2
    db1_ref[...] = accb


def _wgrad_splits(cfg: configs.BwdConfig, m: int, hidden: int) -> int:
    k_steps = pl.cdiv(m, cfg.wgrad_pixels)
    wanted = cfg.wgrad_splits or pl.cdiv(4 * H100_SMS, hidden // cfg.wgrad_chunk)
    return max(1, min(wanted, k_steps))


def convfirst_fused_bwd(x, params: ConvFirstParams, dy, *, config: configs.BwdConfig | None = None,
                        group_width: int, act: str = "silu", residual: bool = True, ln_eps: float = 1e-6):
    """(dx, d params) of `convfirst_block` for cotangent dy, as the module docstring describes.
    Parameter gradients come back in the parameters' dtypes (float32 for a model)."""
    if (reason := check(x, params, group_width=group_width, act=act)) is not None:
        raise UnsupportedError(f"pallas_fused backward: {reason}")
    n_img, h, w, c = x.shape
    hidden = params.w_expand.shape[1]
    cfg = config or configs.bwd_heuristic(c, hidden)
    if (reason := _config_reason(cfg, c, hidden)) is not None:
        raise UnsupportedError(f"pallas_fused backward config {cfg}: {reason}")
    f32, dt_ = jnp.float32, x.dtype
    m = n_img * h * w
    layer_norm = params.ln_scale is not None
    ln_s = (params.ln_scale if layer_norm else jnp.ones((c,))).astype(f32)
    ln_b = (params.ln_bias if layer_norm else jnp.zeros((c,))).astype(f32)
    w1, w2 = params.w_expand.astype(dt_), params.w_project.astype(dt_)
    b1 = params.b_expand.astype(f32)
    dy = dy.astype(dt_)
    t = gconv(x, params.w_conv, params.conv_bias(), group_width=group_width, out_dtype=f32).reshape(m, c)
    dy2 = dy.reshape(m, c)
    static = dict(m=m, c=c, cfg=cfg, act=act)
    params_in = pltriton.CompilerParams(num_warps=cfg.num_warps, num_stages=cfg.num_stages)

    def whole(a):
        return pl.BlockSpec(a.shape, lambda *_: (0,) * a.ndim)

    tiles = pl.cdiv(m, cfg.block_pixels)
    vec = pl.BlockSpec((None, c), lambda i: (i, 0))
    dgrad_in = (t, dy2, ln_s, ln_b, w1, b1, w1.T, w2.T)
    dt, n, db2, dlns, dlnb, dbc = pl.pallas_call(
        functools.partial(_dgrad_kernel, hidden=hidden, layer_norm=layer_norm, ln_eps=ln_eps, **static),
        out_shape=(jax.ShapeDtypeStruct((m, c), dt_),) * 2 + (jax.ShapeDtypeStruct((tiles, c), f32),) * 4,
        grid=(tiles,),
        in_specs=[whole(a) for a in dgrad_in],
        out_specs=(whole(t),) * 2 + (vec,) * 4,
        compiler_params=params_in,
        cost_estimate=pl.CostEstimate(flops=2 * 3 * m * c * hidden, transcendentals=m * hidden,
                                      bytes_accessed=m * c * (4 + 3 * dt_.itemsize)),
        interpret=interpret_mode(),
        name=f"convfirst_bwd_dgrad_c{c}",
    )(*dgrad_in)

    splits = _wgrad_splits(cfg, m, hidden)
    steps = pl.cdiv(pl.cdiv(m, cfg.wgrad_pixels), splits)
    hc = cfg.wgrad_chunk
    wgrad_in = (n, dy2, w1, b1, w2.T)
    dw1p, dw2p, db1p = pl.pallas_call(
        functools.partial(_wgrad_kernel, steps=steps, **static),
        out_shape=(jax.ShapeDtypeStruct((splits, c, hidden), f32), jax.ShapeDtypeStruct((splits, hidden, c), f32),
                   jax.ShapeDtypeStruct((splits, hidden), f32)),
        grid=(hidden // hc, splits),
        in_specs=[whole(a) for a in wgrad_in],
        out_specs=(pl.BlockSpec((None, c, hc), lambda j, s: (s, 0, j)),
                   pl.BlockSpec((None, hc, c), lambda j, s: (s, j, 0)),
                   pl.BlockSpec((None, hc), lambda j, s: (s, j))),
        compiler_params=pltriton.CompilerParams(num_warps=cfg.wgrad_warps, num_stages=cfg.num_stages),
        cost_estimate=pl.CostEstimate(flops=2 * 4 * m * c * hidden, transcendentals=m * hidden,
                                      bytes_accessed=(hidden // hc) * m * c * 2 * dt_.itemsize),
        interpret=interpret_mode(),
        name=f"convfirst_bwd_wgrad_c{c}",
    )(*wgrad_in)

    dt = dt.reshape(x.shape)
    dx = gconv(dt, transposed_conv_weights(params.w_conv, group_width), jnp.zeros((c,), f32),
               group_width=group_width)
    if residual:
        dx = (dx.astype(f32) + dy.astype(f32)).astype(dt_)
    _, conv_vjp = jax.vjp(lambda wc: grouped_conv(x, wc, group_width), params.w_conv)
    (dw_conv,) = conv_vjp(dt.astype(f32))
    grads = ConvFirstParams(
        w_conv=dw_conv, b_conv=None if params.b_conv is None else dbc.sum(0), w_expand=dw1p.sum(0), b_expand=db1p.sum(0),
        w_project=dw2p.sum(0), b_project=db2.sum(0),
        ln_scale=dlns.sum(0) if layer_norm else None, ln_bias=dlnb.sum(0) if layer_norm else None)
    return dx, jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
