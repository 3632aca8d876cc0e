"""Block-fused ConvFirst kernel (Pallas, Triton backend): one kernel per residual block.

Per program: one tile_h x tile_w pixel tile of one image (or `flat_pixels` consecutive pixels of the
flattened batch), all C channels (the tensor machine of convfirst.cost.tensor_machine with the same
tile):
1. grouped k x k conv: for each tap, masked loads of the shifted input tile (zeros outside the image;
   halo re-reads hit L1/L2) times a block-diagonal weight per `conv_chunk` channels on the tensor
   cores (depthwise: CUDA-core FMAs), f32 accumulators; + bias; optional per-pixel LayerNorm;
2. the MLP streamed over the hidden width in `hidden_chunk` steps:
   h = act(t @ W_exp[:, chunk] + b), acc += h @ W_prj[chunk, :] -- the E*C activation never leaves
   the chip and the workspace is O(pixels x hidden_chunk);
3. epilogue: + bias + residual (x re-read from L2), one store of y.
DRAM traffic: x once (+ halo), y once, weights per tile from L2.

Triton-backend constraints shape the code: power-of-two value shapes (channels are processed in
power-of-two chunks), no register slicing or scratch (every window is a masked ref load).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels.common import dtype_reason, interpret_mode, is_pow2, kernel_activation
from pallas_kernels.convfirst_block import configs
from pallas_kernels.convfirst_block.reference import ConvFirstParams
from pallas_kernels.layers.gconv import block_diagonal_conv_weights
from pallas_kernels.registry import UnsupportedError

MAX_KERNEL_SIZE = 7


def check(x, params: ConvFirstParams, *, platform=None, group_width: int, act: str, **_) -> str | None:
    """None when the fused kernel supports this call, else why not."""
    if (reason := dtype_reason(x)) is not None:
        return reason
    if x.ndim != 4:
        return f"expects NHWC input, got shape {tuple(x.shape)}"
    k, _, g, c = params.w_conv.shape
    hidden = params.w_expand.shape[1]
    if g != group_width:
        return f"the conv weight has groups of {g} input channels, group_width is {group_width}"
    if c < 16 or not is_pow2(c):
        return f"channels C={c} must be a power of two >= 16 (Triton value shapes)"
    if c > configs.MAX_CHANNELS:
        return (f"C={c} > {configs.MAX_CHANNELS}: f32 accumulators for a 64-pixel tile would "
                "not fit in registers (such wide stages are compute-bound layer-wise; use xla)")
    if hidden % 16:
        return f"hidden width {hidden} must be a multiple of 16"
    if k % 2 == 0 or k > MAX_KERNEL_SIZE:
        return f"kernel size {k} unsupported (odd, <= {MAX_KERNEL_SIZE})"
    if group_width != 1 and (not is_pow2(group_width) or group_width > 64):
        return f"group width {group_width} unsupported (1 or a power of two <= 64)"
    if params.w_project.shape[1] != c:
        return "the fused kernel needs C_out == C_in (residual block)"
    if act not in ("silu", "gelu", "gelu_tanh", "relu", "none"):
        return f"activation {act!r} unsupported"
    return None


def _config_reason(cfg: configs.FusedConfig, c: int, hidden: int, group_width: int) -> str | None:
    for name in ("tile_h", "tile_w", "conv_chunk", "hidden_chunk") + (("flat_pixels",) if cfg.flat_pixels else ()):
        if not is_pow2(getattr(cfg, name)):
            return f"{name}={getattr(cfg, name)} must be a power of two"
    if cfg.pixels < 16 or cfg.conv_chunk < 16 or cfg.hidden_chunk < 16:
        return "tiles need >= 16 pixels and chunks >= 16 channels (tensor-core dot minimum)"
    if cfg.pixels * c > (limit := configs.max_accumulators(cfg.num_warps)):
        return (f"tile of {cfg.pixels} pixels x C={c} exceeds the {limit} f32 accumulators "
                f"{cfg.num_warps} warps hold in registers")
    if c % cfg.conv_chunk or hidden % cfg.hidden_chunk:
        return f"chunks (conv {cfg.conv_chunk}, hidden {cfg.hidden_chunk}) must divide C={c} and hidden={hidden}"
    if group_width > 1 and cfg.conv_chunk % group_width:
        return f"conv_chunk={cfg.conv_chunk} must be a multiple of group_width={group_width}"
    return None


def join_order(n_chunks: int, chunk: int):
    """Channel order of `_join(split(t))`: joined[:, p] == t[:, order[p]] (host-side permutation)."""
    parts = [np.arange(j * chunk, (j + 1) * chunk) for j in range(n_chunks)]
    while len(parts) > 1:
        parts = [np.stack([a, b], axis=-1).reshape(-1) for a, b in zip(parts[::2], parts[1::2])]
    return parts[0]


def _join(parts):
    """Chunks -> one (pixels, C) value. Triton has no general concatenate; pairwise joins (tt.join)
    interleave channels, which `join_order` undoes by permuting the expand weights on the host."""
    while len(parts) > 1:
        parts = [jnp.stack([a, b], axis=-1).reshape(a.shape[0], 2 * a.shape[1])
                 for a, b in zip(parts[::2], parts[1::2])]
    return parts[0]


def _pixels(cfg, n, h, w):
    """(image or None, row, col, inside) of each pixel of this program's tile. Tiled: the program's
    refs are one image plane; flat: the whole batch, pixels numbered n*H*W row-major."""
    p = lax.iota(jnp.int32, cfg.pixels)
    if cfg.flat_pixels:
        q = pl.program_id(0) * cfg.flat_pixels + p
        rem = q % (h * w)
        return q // (h * w), rem // w, rem % w, q < n * h * w
    th, tw = cfg.tile_h, cfg.tile_w
    rows = pl.program_id(1) * th + lax.shift_right_logical(p, tw.bit_length() - 1)
    cols = pl.program_id(2) * tw + (p & (tw - 1))
    return None, rows, cols, (rows < h) & (cols < w)


def _kernel(x_ref, wc_ref, bc_ref, lns_ref, lnb_ref, w1_ref, b1_ref, w2_ref, b2_ref, o_ref, *,
            n, h, w, c, hidden, k, depthwise, cfg, act, residual, layer_norm, ln_eps):
    cw, be, bm = cfg.conv_chunk, cfg.hidden_chunk, cfg.pixels
    f32 = jnp.float32
    n_conv = c // cw
    img, rows, cols, inside = _pixels(cfg, n, h, w)
    ch = lax.iota(jnp.int32, c)

    def at(ref, im, rr, cc):  # the (pixels, C) window at images im, rows rr, cols cc
        index = (rr[:, None], cc[:, None], ch[None, :])
        return ref.at[index if im is None else (im[:, None], *index)]

    img_in = None if img is None else jnp.clip(img, 0, n - 1)

    def load_x(rr, cc, ok):  # (pixels, C): one wide gather, zeros outside the image
        ref = at(x_ref, img_in, jnp.clip(rr, 0, h - 1), jnp.clip(cc, 0, w - 1))
        return pltriton.load(ref, mask=jnp.broadcast_to(ok[:, None], (bm, c)), other=0.0)

    # 1. k x k conv; taps outer, each tap one load of all channels (halo re-reads hit L1/L2).
    t = jnp.zeros((bm, c), f32) if depthwise else [jnp.zeros((bm, cw), f32)] * n_conv
    for dy in range(k):
        for dx in range(k):
            rr, cc = rows + (dy - k // 2), cols + (dx - k // 2)
            xt = load_x(rr, cc, inside & (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w))
            tap = dy * k + dx
            if depthwise:  # CUDA-core FMAs
                t = t + xt.astype(f32) * wc_ref[tap, :][None, :]
                continue
            parts = jnp.split(xt, n_conv, axis=1) if n_conv > 1 else [xt]
            t = [t[j] + jnp.dot(parts[j], wc_ref[pl.ds((tap * n_conv + j) * cw, cw), :],
                                preferred_element_type=f32) for j in range(n_conv)]
    if not depthwise:
        t = _join(t)  # channels now in join_order; all per-channel vectors below are permuted alike
    t = t + bc_ref[...][None, :]
    if layer_norm:
        mean = t.sum(axis=1) / c
        centered = t - mean[:, None]
        inv = lax.rsqrt((centered * centered).sum(axis=1) / c + ln_eps)
        t = centered * inv[:, None] * lns_ref[...][None, :] + lnb_ref[...][None, :]
    t = t.astype(x_ref.dtype)
    activation = kernel_activation(act)

    # 2. MLP streamed over hidden chunks; the hidden activation stays on chip.
    def body(e, acc):
        hs = pl.ds(e * be, be)
        hid = jnp.dot(t, w1_ref[:, hs], preferred_element_type=f32) + b1_ref[hs][None, :]
        return acc + jnp.dot(activation(hid).astype(x_ref.dtype), w2_ref[hs, :], preferred_element_type=f32)

    acc = lax.fori_loop(0, hidden // be, body, jnp.zeros((bm, c), f32))

    # 3. epilogue: bias, residual (x re-read from L2), one store of all channels.
    y = acc + b2_ref[...][None, :]
    if residual:
        y = y + load_x(rows, cols, inside).astype(f32)
    # Unclipped: masked-out pixels point past the image (or batch), which the GPU never touches and
    # the interpreter's scatter drops (clipping would alias them onto real pixels of this tile).
    pltriton.store(at(o_ref, img, rows, cols), y.astype(o_ref.dtype),
                   mask=jnp.broadcast_to(inside[:, None], (bm, c)))


def convfirst_fused(x, params: ConvFirstParams, *, config: configs.FusedConfig | None = None,
                    group_width: int, act: str = "silu", residual: bool = True, ln_eps: float = 1e-6):
    """The 'pallas_fused' implementation of `convfirst_block` (see module docstring)."""
    if (reason := check(x, params, group_width=group_width, act=act)) is not None:
        raise UnsupportedError(f"pallas_fused: {reason}")
    n, h, w, c = x.shape
    k = params.w_conv.shape[0]
    hidden = params.w_expand.shape[1]
    cfg = config or configs.heuristic(c, hidden, group_width, h, w)
    if (reason := _config_reason(cfg, c, hidden, group_width)) is not None:
        raise UnsupportedError(f"pallas_fused config {cfg}: {reason}")
    depthwise = group_width == 1
    f32, dt = jnp.float32, x.dtype
    layer_norm = params.ln_scale is not None
    ln_s = params.ln_scale if layer_norm else jnp.ones((c,), f32)
    ln_b = params.ln_bias if layer_norm else jnp.zeros((c,), f32)
    if depthwise:
        wc = params.w_conv.reshape(k * k, c).astype(f32)
        order = np.arange(c)
    else:
        wc = block_diagonal_conv_weights(params.w_conv, group_width, cfg.conv_chunk).astype(dt)
        order = join_order(c // cfg.conv_chunk, cfg.conv_chunk)
    operands = (x, wc, params.conv_bias()[order].astype(f32), ln_s[order].astype(f32), ln_b[order].astype(f32),
                params.w_expand[order].astype(dt), params.b_expand.astype(f32),
                params.w_project.astype(dt), params.b_project.astype(f32))

    def whole(a):
        return pl.BlockSpec(a.shape, lambda *_: (0,) * a.ndim)

    if cfg.flat_pixels:
        grid, plane = (pl.cdiv(n * h * w, cfg.flat_pixels),), whole(x)
    else:
        grid = (n, pl.cdiv(h, cfg.tile_h), pl.cdiv(w, cfg.tile_w))
        plane = pl.BlockSpec((None, h, w, c), lambda b, i, j: (b, 0, 0, 0))
    kernel = functools.partial(
        _kernel, n=n, h=h, w=w, c=c, hidden=hidden, k=k, depthwise=depthwise, cfg=cfg, act=act,
        residual=residual, layer_norm=layer_norm, ln_eps=ln_eps)
    macs = n * h * w * (k * k * group_width * c + 2 * c * hidden)
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct(x.shape, dt),
        grid=grid,
        in_specs=[plane] + [whole(a) for a in operands[1:]],
        out_specs=plane,
        compiler_params=pltriton.CompilerParams(num_warps=cfg.num_warps, num_stages=cfg.num_stages),
        cost_estimate=pl.CostEstimate(flops=2 * macs, transcendentals=n * h * w * hidden,
                                      bytes_accessed=2 * x.size * x.dtype.itemsize),
        interpret=interpret_mode(),
        name=f"convfirst_fused_c{c}_k{k}_g{group_width}",
    )(*operands)
