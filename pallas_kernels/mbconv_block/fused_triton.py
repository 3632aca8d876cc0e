"""Block-fused MBConv kernel (Pallas, Triton backend): expand -> k x k conv -> project in ONE kernel.

Per program: one tile_h x tile_w output tile of one image, all output channels in f32 accumulators
(pixels x C_out). The hidden width E*C is streamed in block_e chunks:
  for each chunk, for each of the k*k taps:
      h = act(x[shifted pixels] @ W_exp[:, chunk] + b_exp)      (tensor cores)
      h = 0 where the shifted pixel is outside the image          (the conv's zero padding is on h:
                                                                   act(0 @ W + b) is not zero)
      conv += h * w_dw[tap, chunk]  |  h @ blockdiag(w_g[tap, chunk])
  acc += act(conv + b_conv) @ W_prj[chunk, :]
epilogue: + b_prj [+ x], one store. The expanded activation never leaves the chip: DRAM traffic is x
(+ halo re-reads from L1/L2) and y, plus weights from L2 per tile.

Cost of this scheme: the expansion is recomputed for every tap, i.e. k*k times per pixel (tensor-
machine cost: expand MACs x k^2 -- 9x at k = 3, 25x at k = 5 -- on top of the block's MACs). The
Triton backend leaves no cheaper choice: it has no SMEM scratch to stage an expanded tile and no
register slicing/gather to shift one in registers, so each tap's window must come from a ref load,
and only x lives in a ref. Future work (Mosaic GPU, which has SMEM scratch and sliceable SMEM refs):
expand once on the (tile_h+k-1) x (tile_w+k-1) halo tile into SMEM and read the k*k shifted windows
from there, cutting the overhead to ((T+k-1)/T)^2 (1.56x for an 8x8 tile at k = 3, paper.md s. 4).

Supported: no squeeze-excite (its global pool breaks depth-first fusion), stride 1, k in {3, 5},
group width 1/8/16, with or without expansion (E = 1) and residual, bf16/fp16.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels.common import (dtype_reason, interpret_mode, kernel_activation, next_pow2, pad_axis,
                                   store_rows)
from pallas_kernels.layers.configs import MIN_DOT
from pallas_kernels.layers.gconv import conv_tap, conv_weight_operand, gconv_reason, sum_taps
from pallas_kernels.mbconv_block import configs
from pallas_kernels.mbconv_block.reference import MBConvParams
from pallas_kernels.registry import UnsupportedError

KERNEL_SIZES = (3, 5)
MAX_CHANNELS = 512  # padded C_in / C_out: beyond this the f32 accumulators and x tiles do not fit


def check(x, params: MBConvParams, *, platform=None, group_width: int = 1, stride: int = 1,
          residual: bool = True, **_) -> str | None:
    """None when the fused kernel supports this call, else why not."""
    if reason := dtype_reason(x):
        return reason
    if params.se is not None:
        return ("squeeze-excite needs a global pool over the image, which a depth-first fused tile "
                "cannot see (use pallas_layerwise or xla)")
    if stride != 1:
        return f"stride {stride} unsupported (the fused kernel is stride 1; use pallas_layerwise or xla)"
    hidden_shape = (*x.shape[:-1], params.w_conv.shape[-1])
    if reason := gconv_reason(hidden_shape, params.w_conv.shape, group_width):
        return reason
    if params.w_conv.shape[0] not in KERNEL_SIZES:
        return f"kernel size {params.w_conv.shape[0]} unsupported; valid: {KERNEL_SIZES}"
    c_in, c_out = x.shape[-1], params.w_project.shape[1]
    if max(c_in, c_out) > MAX_CHANNELS:
        return f"channels C_in={c_in}, C_out={c_out} exceed {MAX_CHANNELS} (accumulators do not fit)"
    if residual and c_out != c_in:
        return f"residual needs C_out == C_in, got {c_out} != {c_in}"
    return None


def _kernel(x_ref, *refs, h, w, c_in, c_out, k, expand, depthwise, cfg: configs.FusedConfig, act,
            residual):
    if expand:
        we_ref, be_ref, wc_ref, bc_ref, wp_ref, bp_ref, o_ref = refs
    else:
        wc_ref, bc_ref, wp_ref, bp_ref, o_ref = refs
    th, tw, be = cfg.tile_h, cfg.tile_w, cfg.block_e
    pixels, f32, dtype = th * tw, jnp.float32, x_ref.dtype
    hidden_p, acc_width = wp_ref.shape
    n_chunks = hidden_p // be
    f = kernel_activation(act)
    p = lax.iota(jnp.int32, pixels)
    tiles_w = pl.cdiv(w, tw)
    oh = (pl.program_id(0) // tiles_w) * th + p // tw
    ow = (pl.program_id(0) % tiles_w) * tw + p % tw
    img = pl.program_id(1) * h  # program ids are read outside the loop (interpret mode needs it)

    def tap_window(dy, dx):
        ih, iw = oh + dy - k // 2, ow + dx - k // 2
        inside = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < w)
        return (img + jnp.clip(ih, 0, h - 1)) * w + jnp.clip(iw, 0, w - 1), inside

    def load_x(pix, ok, c0, width):
        ch = c0 + lax.iota(jnp.int32, width)
        ref = x_ref.at[pix[:, None], ch[None, :]]
        return pltriton.load(ref, mask=ok[:, None] & (ch < c_in)[None, :], other=0.0)

    def chunk(e, acc):
        e0 = e * be
        if expand:  # this chunk's expansion weights, loaded once for all taps
            w_e, b_e = we_ref[:, pl.ds(e0, be)], be_ref[pl.ds(e0, be)][None, :]

        def tap(dy, dx, t):
            pix, inside = tap_window(dy, dx)
            if expand:  # recompute the expansion of the shifted pixels for this tap
                xs = load_x(pix, inside, 0, we_ref.shape[0])
                hid = f(jnp.dot(xs, w_e, preferred_element_type=f32) + b_e)
                hid = jnp.where(inside[:, None], hid, 0.0).astype(dtype)
            else:  # E = 1: the conv runs on x itself, zero-padded by the masked load
                hid = load_x(pix, inside, e0, be)
            return conv_tap(wc_ref, t, hid, e0, be, hidden_p, depthwise)

        conv = sum_taps(k, tap, jnp.zeros((pixels, be), f32))
        hc = f(conv + bc_ref[pl.ds(e0, be)][None, :]).astype(dtype)
        return acc + jnp.dot(hc, wp_ref[pl.ds(e0, be), :], preferred_element_type=f32)

    acc = lax.fori_loop(0, n_chunks, chunk, jnp.zeros((pixels, acc_width), f32))
    y = acc + bp_ref[...][None, :]
    valid = (oh < h) & (ow < w)
    center = (img + jnp.minimum(oh, h - 1)) * w + jnp.minimum(ow, w - 1)
    if residual:
        y += load_x(center, valid, 0, acc_width).astype(f32)
    co = lax.iota(jnp.int32, acc_width)
    rows = store_rows((img + oh) * w + ow, valid, o_ref.shape[0])
    pltriton.store(o_ref.at[rows[:, None], co[None, :]], y.astype(o_ref.dtype),
                   mask=valid[:, None] & (co < c_out)[None, :])


def mbconv_fused(x, params: MBConvParams, *, config: configs.FusedConfig | None = None,
                 group_width: int = 1, stride: int = 1, act: str = "silu", residual: bool = True):
    """The 'pallas_fused' implementation of `mbconv_block` (see module docstring)."""
    if reason := check(x, params, group_width=group_width, stride=stride, residual=residual):
        raise UnsupportedError(f"pallas_fused: {reason}")
    kernel_activation(act)
    n, h, w, c_in = x.shape
    k, hidden, c_out = params.w_conv.shape[0], params.w_conv.shape[-1], params.w_project.shape[1]
    cfg = config or configs.heuristic(x.shape, params, group_width=group_width)
    if reason := cfg.reason(group_width):
        raise UnsupportedError(f"pallas_fused config {cfg}: {reason}")
    dt, f32 = x.dtype, jnp.float32
    hidden_p = pl.cdiv(hidden, cfg.block_e) * cfg.block_e
    acc_width = max(MIN_DOT, next_pow2(c_out))
    expand = params.w_expand is not None
    operands = [x.reshape(n * h * w, c_in)]
    if expand:
        c_in_p = max(MIN_DOT, next_pow2(c_in))
        operands += [pad_axis(pad_axis(params.w_expand.astype(dt), 0, c_in_p), 1, hidden_p),
                     pad_axis(params.b_expand.astype(f32), 0, hidden_p)]
    operands += [conv_weight_operand(params.w_conv, group_width, cfg.block_e, hidden_p, dt),
                 pad_axis(params.b_conv.astype(f32), 0, hidden_p),
                 pad_axis(pad_axis(params.w_project.astype(dt), 0, hidden_p), 1, acc_width),
                 pad_axis(params.b_project.astype(f32), 0, acc_width)]
    kernel = functools.partial(_kernel, h=h, w=w, c_in=c_in, c_out=c_out, k=k, expand=expand,
                               depthwise=group_width == 1, cfg=cfg, act=act, residual=residual)
    expand_macs = k * k * c_in * hidden if expand else 0  # recomputed per tap
    macs = n * h * w * (expand_macs + k * k * group_width * hidden + hidden * c_out)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((n * h * w, c_out), dt),
        grid=(pl.cdiv(h, cfg.tile_h) * pl.cdiv(w, cfg.tile_w), n),
        compiler_params=pltriton.CompilerParams(num_warps=cfg.num_warps, num_stages=cfg.num_stages),
        cost_estimate=pl.CostEstimate(flops=2 * macs, transcendentals=n * h * w * hidden * (k * k + 1),
                                      bytes_accessed=dt.itemsize * n * h * w * (c_in + c_out)),
        interpret=interpret_mode(),
        name=f"mbconv_fused_k{k}_g{group_width}_e{hidden}",
    )(*operands)
    return y.reshape(n, h, w, c_out)
