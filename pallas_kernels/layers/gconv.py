"""k x k grouped conv, 'same' padding, NHWC (Pallas, Triton backend) with fused bias [+ activation].

One program computes a tile_h x tile_w output-pixel tile of one image for block_c channels. Each of
the k*k taps is one wide masked load of the shifted input window (zeros outside the image give the
conv's zero padding; halo re-reads of neighbouring tiles hit L1/L2), then:
- depthwise (group width 1): FMAs on CUDA cores into (pixels, block_c) f32 accumulators;
- grouped (group width 8, 16): the window is split in registers (tt.split, halves only) into
  conv_chunk-wide parts, each one tensor-core dot (pixels, conv_chunk) @ (conv_chunk, conv_chunk)
  with a block-diagonal weight (wasted MACs: conv_chunk / group width; dots need K >= 16 and the
  Triton backend cannot slice one 8-wide group out of a value).
Stride 2 is index arithmetic on the same loads (XLA's 'SAME' padding: the low pad is half the total).
Operands in x.dtype (weights rounded to it, as in the reference), f32 accumulation, out in x.dtype.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels.common import dtype_reason, interpret_mode, kernel_activation, pad_axis, store_rows
from pallas_kernels.convfirst_block.reference import widen_groups
from pallas_kernels.layers.configs import GConvConfig, gconv_heuristic
from pallas_kernels.registry import UnsupportedError

KERNEL_SIZES = (3, 5, 7)
GROUP_WIDTHS = (1, 8, 16)
STRIDES = (1, 2)


def gconv_reason(x_shape, w_shape, group_width: int, stride: int = 1) -> str | None:
    """None when `gconv` supports these shapes, else why not (shared by the blocks' checks)."""
    k, k2, g, c = w_shape
    if len(x_shape) != 4 or x_shape[-1] != c:
        return f"expects NHWC input with {c} channels, got shape {tuple(x_shape)}"
    if k != k2 or k not in KERNEL_SIZES:
        return f"kernel {k}x{k2} unsupported; valid: square k in {KERNEL_SIZES}"
    if group_width not in GROUP_WIDTHS or g != group_width:
        return (f"group width {group_width} (weights have {g}) unsupported; valid: {GROUP_WIDTHS}")
    if c % group_width:
        return f"channels {c} are not a multiple of the group width {group_width}"
    if stride not in STRIDES:
        return f"stride {stride} unsupported; valid: {STRIDES}"
    return None


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """(output size, low pad) of XLA's 'SAME' padding."""
    out = -(-size // stride)
    return out, max((out - 1) * stride + k - size, 0) // 2


def block_diagonal_conv_weights(w_conv, group_width: int, chunk: int):
    """(k, k, G, C) grouped weights -> (k*k*C/chunk*chunk, chunk) dense per-chunk blocks.

    Row ((tap * n_chunks + j) * chunk + i), column o holds the weight from input channel
    j*chunk+i to output channel j*chunk+o, zero across groups: `widen_groups` to group width
    `chunk`, chunk-major. C must be a multiple of chunk (pad the output-channel axis of w_conv with
    zeros first).
    """
    k, _, _, c = w_conv.shape
    wide = widen_groups(w_conv, group_width, chunk)  # (k, k, i, j * chunk + o)
    return wide.reshape(k, k, chunk, c // chunk, chunk).transpose(0, 1, 3, 2, 4).reshape(k * k * c, chunk)


def conv_weight_operand(w_conv, group_width: int, chunk: int, padded: int, dtype):
    """Kernel layout of the conv weights, channels zero-padded to `padded` (a multiple of chunk):
    depthwise (k*k, padded) rows per tap; grouped the block-diagonal (k*k*padded, chunk) blocks."""
    k, _, _, c = w_conv.shape
    w = pad_axis(w_conv.astype(dtype), 3, padded)
    if group_width == 1:
        return w.reshape(k * k, padded)
    return block_diagonal_conv_weights(w, group_width, chunk)


def conv_tap(w_ref, tap, window, c0, chunk: int, padded: int, depthwise: bool):
    """One tap's contribution (pixels, chunk) f32 for input `window` (pixels, chunk) of the channels
    c0 .. c0+chunk-1 (c0 a multiple of chunk), weights laid out by `conv_weight_operand`."""
    if depthwise:
        return window.astype(jnp.float32) * w_ref[tap, pl.ds(c0, chunk)].astype(jnp.float32)[None, :]
    w = w_ref[pl.ds(tap * padded + c0, chunk), :]
    return jnp.dot(window, w, preferred_element_type=jnp.float32)


def sum_taps(k: int, tap, acc):
    """acc + sum of tap(dy, dx, dy * k + dx) over the k x k taps (acc: an array or a tuple of them):
    a loop over tap rows with the k taps of a row unrolled. Unrolling all k*k masked loads made
    compiles slow (5-11 s at k = 7 on the H100, pallas-gpu.md section 9; likewise in interpret
    mode); the row loop is also one Triton can software-pipeline (num_stages)."""
    def row(dy, acc):
        for dx in range(k):
            acc = jax.tree.map(jnp.add, acc, tap(dy, dx, dy * k + dx))
        return acc

    return lax.fori_loop(0, k, row, acc)


def _kernel(x_ref, w_ref, b_ref, o_ref, *, h, w, c, ho, wo, k, stride, pad_h, pad_w, depthwise, cfg,
            act, padded):
    th, tw, bc = cfg.tile_h, cfg.tile_w, cfg.block_c
    chunk = bc if depthwise else cfg.conv_chunk
    n_parts = bc // chunk
    p = lax.iota(jnp.int32, th * tw)
    tiles_w = pl.cdiv(wo, tw)
    tile = pl.program_id(0)
    oh = (tile // tiles_w) * th + p // tw
    ow = (tile % tiles_w) * tw + p % tw
    c0 = pl.program_id(1) * bc
    ch = c0 + lax.iota(jnp.int32, bc)
    ch_ok = ch < c  # channels masked, not clamped: clamping defeats vector loads (see gemm.py)
    img = pl.program_id(2) * h  # program ids are read outside the loop (interpret mode needs it)

    def tap(dy, dx, t):  # one wide load of block_c channels, split in registers into dot chunks
        ih, iw = oh * stride + dy - pad_h, ow * stride + dx - pad_w
        inside = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < w)
        pix = (img + jnp.clip(ih, 0, h - 1)) * w + jnp.clip(iw, 0, w - 1)
        window = pltriton.load(x_ref.at[pix[:, None], ch[None, :]],
                               mask=inside[:, None] & ch_ok[None, :], other=0.0)
        parts = jnp.split(window, n_parts, axis=1) if n_parts > 1 else [window]
        return tuple(conv_tap(w_ref, t, part, c0 + j * chunk, chunk, padded, depthwise)
                     for j, part in enumerate(parts))

    acc = sum_taps(k, tap, tuple(jnp.zeros((th * tw, chunk), jnp.float32) for _ in range(n_parts)))
    valid = (oh < ho) & (ow < wo)
    rows = store_rows((pl.program_id(2) * ho + oh) * wo + ow, valid, o_ref.shape[0])
    f = kernel_activation(act)
    for j in range(n_parts):  # one store per chunk: channels stay in their natural order
        cj = c0 + j * chunk
        y = f(acc[j] + b_ref[pl.ds(cj, chunk)][None, :])
        ch_j = cj + lax.iota(jnp.int32, chunk)
        pltriton.store(o_ref.at[rows[:, None], ch_j[None, :]], y.astype(o_ref.dtype),
                       mask=valid[:, None] & (ch_j < c)[None, :])


def gconv(x, w_conv, b_conv, *, group_width: int, stride: int = 1, act: str = "none",
          config: GConvConfig | None = None, out_dtype=None):
    """act(grouped_conv(x, w_conv) + b_conv) for NHWC x and HWIO (k, k, G, C) weights, in out_dtype
    (default x.dtype; float32 keeps the accumulator unrounded, as the fused backward needs)."""
    if (reason := dtype_reason(x) or gconv_reason(x.shape, w_conv.shape, group_width, stride)):
        raise UnsupportedError(f"gconv: {reason}")
    kernel_activation(act)
    n, h, w, c = x.shape
    k = w_conv.shape[0]
    (ho, pad_h), (wo, pad_w) = same_padding(h, k, stride), same_padding(w, k, stride)
    cfg = config or gconv_heuristic(ho, wo, c, group_width)
    if (reason := cfg.reason(group_width)) is not None:
        raise UnsupportedError(f"gconv config {cfg}: {reason}")
    n_blocks = pl.cdiv(c, cfg.block_c)
    padded = n_blocks * cfg.block_c
    wk = conv_weight_operand(w_conv, group_width, cfg.conv_chunk, padded, x.dtype)
    bk = pad_axis(b_conv.astype(jnp.float32), 0, padded)
    kernel = functools.partial(_kernel, h=h, w=w, c=c, ho=ho, wo=wo, k=k, stride=stride, pad_h=pad_h,
                               pad_w=pad_w, depthwise=group_width == 1, cfg=cfg, act=act, padded=padded)
    tiles = pl.cdiv(ho, cfg.tile_h) * pl.cdiv(wo, cfg.tile_w)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((n * ho * wo, c), out_dtype or x.dtype),
        grid=(tiles, n_blocks, n),  # tiles fastest: neighbours share halo rows in L2
        compiler_params=pltriton.CompilerParams(num_warps=cfg.num_warps, num_stages=cfg.num_stages),
        cost_estimate=pl.CostEstimate(flops=2 * n * ho * wo * c * k * k * group_width,
                                      transcendentals=n * ho * wo * c if act != "none" else 0,
                                      bytes_accessed=x.dtype.itemsize * (x.size + n * ho * wo * c)),
        interpret=interpret_mode(),
        name=f"gconv_k{k}_g{group_width}_s{stride}",
    )(x.reshape(n * h * w, c), wk, bk)
    return y.reshape(n, ho, wo, c)
