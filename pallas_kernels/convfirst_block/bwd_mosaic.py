"""'mosaic_mlp' backward of the ConvFirst block: the MLP's input gradient in one Mosaic GPU kernel.

    t  = norm(gconv(x) + b)                       XLA (the forward's graph: XLA merges the two)
    dt, a, dh = kernel(t, dy)                     one Mosaic GPU kernel per block, per 64-pixel tile:
        h  = t @ W1_e + b1_e                      wgmma, hidden chunk e recomputed on chip
        da = dy @ W2_e^T                          wgmma (W2's chunk read transposed in shared memory)
        dh = da * act'(h);  a = act(h)            registers, f32
        dt += dh @ W1_e^T                         wgmma (W1's chunk, the one the expand GEMM used)
    dW1 = t^T dh, dW2 = a^T dy, db1, db2          XLA (cuBLAS GEMMs, column sums)
    dz  = LayerNorm backward(dt)                  one Pallas (Triton) kernel, ln_bwd_triton (C a power
                                                  of two; else autodiff in XLA)
    dx  = vjp(gconv)(dz) [+ dy]                   XLA (cuDNN dgrad/wgrad)

Why: XLA's autodiff runs the MLP backward as five GEMMs and elementwise kernels around them that
write and re-read the hidden pre-activation, its gradient and the activation (4C channels each);
here the recomputed pre-activation and da stay in registers and only a and dh (the weight-gradient
GEMMs' operands) leave the SM. The weight gradients stay in cuBLAS: deterministic, no partial sums.
Both weight streams are the forward kernel's (W1 as C x block_h chunks, W2 as block_h x C); the
transposed uses read the same shared-memory tiles transposed.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from pallas_kernels.common import KERNEL_ACTIVATION_GRADS, interpret_mode, pixel_rows
from pallas_kernels.convfirst_block import ln_bwd_triton, mlp_mosaic
from pallas_kernels.convfirst_block.mlp_mosaic import (INTERPRET_PARAMS, SMEM_ALIGNMENT, SMEM_BYTES, SWIZZLE,
                                                        plgpu)
from pallas_kernels.convfirst_block.reference import ConvFirstParams, compute_grouped_conv, conv_norm, layer_norm
from pallas_kernels.layers.configs import Serializable, ranked
from pallas_kernels.registry import UnsupportedError

BLOCK_M = 64  # rows of one warpgroup's wgmma


@dataclass(frozen=True)
class MosaicBwdConfig(Serializable):
    """block_h: hidden chunk per pipeline step; max_concurrent_steps: weight chunks in flight."""

    block_h: int = 64
    max_concurrent_steps: int = 2

    def smem_bytes(self, c: int, hidden: int, itemsize: int = 2) -> int:
        """Shared memory as Mosaic allocates it, every buffer rounded up to 1 KiB: an upper bound (the
        barriers are over-counted by about 2 KiB), never under."""
        buffers = [BLOCK_M * c * itemsize] * 2  # t (then dt), dy
        buffers += [BLOCK_M * self.block_h * itemsize] * 2  # a, dh
        buffers += [self.max_concurrent_steps * c * self.block_h * itemsize] * 2  # W1, W2 chunks
        buffers += [4 * hidden, 8 * 4 * 3, 8 * 4 * self.max_concurrent_steps]  # b1 (f32), barriers
        return sum(-(-n // SMEM_ALIGNMENT) * SMEM_ALIGNMENT for n in buffers)


def heuristic(c: int, hidden: int) -> MosaicBwdConfig:
    """Two chunks in flight where they fit (every convfirst_tiny stage up to C=256 at 4x expansion;
    at 14x14x256 two beat one by 20 %, run ZJ), else one."""
    two = MosaicBwdConfig(64, 2)
    return two if two.smem_bytes(c, hidden) <= SMEM_BYTES else MosaicBwdConfig(64, 1)


def candidates(c: int, hidden: int) -> list[MosaicBwdConfig]:
    """1-3 weight chunks in flight, the heuristic's first."""
    out = [MosaicBwdConfig(64, s) for s in (1, 2, 3)]
    return ranked(heuristic(c, hidden), [cfg for cfg in out if _config_reason(cfg, c, hidden) is None])


def _config_reason(cfg: MosaicBwdConfig, c: int, hidden: int) -> str | None:
    if cfg.block_h != 64 or hidden % cfg.block_h:
        return f"block_h={cfg.block_h}: 64 (one 128-byte swizzled row) dividing hidden={hidden}"
    if cfg.max_concurrent_steps < 1:
        return f"max_concurrent_steps={cfg.max_concurrent_steps} must be >= 1"
    if (need := cfg.smem_bytes(c, hidden)) > SMEM_BYTES:
        return f"needs {need} bytes of shared memory > {SMEM_BYTES}"
    return None


def check(x, params: ConvFirstParams, *, platform=None, act: str = "silu", **static) -> str | None:
    """The forward kernel's limits (C a multiple of 64 up to 256, Hopper, 16-bit) and the shared
    memory of one chunk in flight."""
    if (reason := mlp_mosaic.check(x, params, platform=platform, act=act)) is not None:
        return reason
    c, hidden = params.w_expand.shape
    if (need := heuristic(c, hidden).smem_bytes(c, hidden)) > SMEM_BYTES:
        return f"C={c}, hidden={hidden}: the backward's tiles need {need} bytes of shared memory > {SMEM_BYTES}"
    return None


def mlp_bwd_mosaic(t, dy, w1, b1, w2, *, act: str, config: MosaicBwdConfig, interpret=None):
    """(dt, a, dh) on (M, C) rows, M a multiple of 64: dh = (dy @ w2^T) * act'(t @ w1 + b1),
    a = act(t @ w1 + b1), dt = dh @ w1^T; a and dh in t.dtype, dt accumulated in float32."""
    m, c = t.shape
    hidden = w1.shape[1]
    bm, bh = BLOCK_M, config.block_h
    if m % bm:
        raise ValueError(f"{m} rows: pad them to a multiple of {bm}")
    dt = t.dtype
    elems = SWIZZLE // jnp.dtype(dt).itemsize
    tiles = (plgpu.TilingTransform((8, elems)), plgpu.SwizzleTransform(SWIZZLE))
    weight_specs = [plgpu.BlockSpec((c, bh), lambda e: (0, e), transforms=tiles),
                    plgpu.BlockSpec((bh, c), lambda e: (e, 0), transforms=tiles)]
    act_and_grad = KERNEL_ACTIVATION_GRADS[act]

    def scoped(t_gmem, dy_gmem, w1_gmem, b1_gmem, w2_gmem, dt_gmem, a_gmem, dh_gmem,
               t_s, dy_s, a_s, dh_s, b1_s, barriers):
        rows = pl.ds(lax.axis_index("m") * bm, bm)
        plgpu.copy_gmem_to_smem(t_gmem.at[rows], t_s, barriers.at[0])
        plgpu.copy_gmem_to_smem(dy_gmem.at[rows], dy_s, barriers.at[1])
        plgpu.copy_gmem_to_smem(b1_gmem, b1_s, barriers.at[2])
        for i in range(3):
            plgpu.barrier_wait(barriers.at[i])

        def step(idx, w1_smem, w2_smem, acc):
            (e,) = idx

            def gemms(acc_h, acc_da):
                plgpu.wgmma(acc_h, t_s, w1_smem)
                plgpu.wgmma(acc_da, dy_s, w2_smem.transpose((1, 0)))
                return acc_h[...], acc_da[...]  # waits for both

            pre, da = pl.run_scoped(gemms, plgpu.ACC((bm, bh), jnp.float32), plgpu.ACC((bm, bh), jnp.float32))
            bias = plgpu.load(b1_s.at[e], layout=plgpu.Layout.WGMMA.reduce(0))
            a, dact = act_and_grad(pre + lax.broadcast_in_dim(bias, (bm, bh), [1]))
            plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the previous chunk's a and dh have left
            a_s[...] = a.astype(dt)
            dh_s[...] = (da if dact is None else da * dact).astype(dt)
            plgpu.commit_smem()
            plgpu.wgmma(acc, dh_s, w1_smem.transpose((1, 0)))
            cols = pl.ds(e * bh, bh)
            plgpu.copy_smem_to_gmem(a_s, a_gmem.at[rows, cols])
            plgpu.copy_smem_to_gmem(dh_s, dh_gmem.at[rows, cols])
            plgpu.wgmma_wait(0)  # w1_smem is released and dh_s rewritten when the step returns
            return acc

        def pipeline(acc):
            plgpu.emit_pipeline(lambda idx, w1s, w2s: step(idx, w1s, w2s, acc), grid=(hidden // bh,), in_specs=weight_specs,
                                max_concurrent_steps=config.max_concurrent_steps)(w1_gmem, w2_gmem)
            return acc[...]

        grad_t = pl.run_scoped(pipeline, plgpu.ACC((bm, c), jnp.float32))
        t_s[...] = grad_t.astype(dt)  # every wgmma reading t has completed
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(t_s, dt_gmem.at[rows])
        plgpu.wait_smem_to_gmem(0)

    scratch = [plgpu.SMEM((bm, c), dt, transforms=tiles), plgpu.SMEM((bm, c), dt, transforms=tiles),
               plgpu.SMEM((bm, bh), dt, transforms=tiles), plgpu.SMEM((bm, bh), dt, transforms=tiles),
               plgpu.SMEM((hidden // bh, bh), jnp.float32), plgpu.Barrier(num_barriers=3)]

    def body(*gmem):
        pl.run_scoped(lambda *smem: scoped(*gmem, *smem), *scratch)

    kernel = plgpu.kernel(
        body, out_type=(jax.ShapeDtypeStruct((m, c), dt), jax.ShapeDtypeStruct((m, hidden), dt),
                        jax.ShapeDtypeStruct((m, hidden), dt)),
        grid=(m // bm,), grid_names=("m",), interpret=interpret,
        compiler_params=plgpu.CompilerParams(approx_math=True))
    return kernel(t, dy, w1.astype(dt), b1.astype(jnp.float32).reshape(-1, bh), w2.astype(dt))


def _conv_layer_norm_vjp(x, params: ConvFirstParams, *, group_width: int, ln_eps: float):
    """(t, vjp) of `conv_norm(precise=False)` with a LayerNorm: the same forward graph (XLA merges it
    with the forward's), the norm's backward in one Pallas kernel (ln_bwd_triton), the conv's by
    autodiff (cuDNN dgrad and wgrad)."""
    dtype = x.dtype
    z, conv_vjp = jax.vjp(lambda a, wc: compute_grouped_conv(a, wc, group_width, out_dtype=dtype), x,
                          params.w_conv)
    if params.b_conv is not None:
        z = z + params.b_conv.astype(dtype)
    t = layer_norm(z.astype(jnp.float32), params.ln_scale, params.ln_bias, ln_eps).astype(dtype)

    def vjp(grad_t):
        dz, d_scale, d_bias, d_bconv = ln_bwd_triton.layer_norm_bwd(z, grad_t, params.ln_scale, eps=ln_eps)
        dx, d_wconv = conv_vjp(dz)
        grads = jax.tree.map(jnp.zeros_like, params)._replace(  # the MLP's: the caller's
            w_conv=d_wconv, b_conv=None if params.b_conv is None else d_bconv, ln_scale=d_scale, ln_bias=d_bias)
        return dx, jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)

    return t, vjp


def convfirst_mosaic_mlp_bwd(x, params: ConvFirstParams, dy, *, config: MosaicBwdConfig | None = None,
                             group_width: int, act: str = "silu", residual: bool = True, ln_eps: float = 1e-6):
    """The 'mosaic_mlp' backward implementation of `convfirst_block`: (dx, d params)."""
    if (reason := check(x, params, platform=jax.default_backend(), act=act)) is not None:
        raise UnsupportedError(f"mosaic_mlp backward: {reason}")
    n, h, w, c = x.shape
    hidden = params.w_expand.shape[1]
    cfg = config or heuristic(c, hidden)
    if (reason := _config_reason(cfg, c, hidden)) is not None:
        raise UnsupportedError(f"mosaic_mlp backward config {cfg}: {reason}")
    f32 = jnp.float32
    if params.ln_scale is not None and ln_bwd_triton.reason(c) is None:
        t, norm_vjp = _conv_layer_norm_vjp(x, params, group_width=group_width, ln_eps=ln_eps)
    else:
        norm = lambda a, p: conv_norm(a, p, group_width=group_width, ln_eps=ln_eps, precise=False)  # noqa: E731
        t, norm_vjp = jax.vjp(norm, x, params)
    m = n * h * w
    t2, dy2 = pixel_rows(t, BLOCK_M), pixel_rows(dy.astype(x.dtype), BLOCK_M)
    grad_t, a, dh = mlp_bwd_mosaic(t2, dy2, params.w_expand, params.b_expand, params.w_project, act=act, config=cfg,
                                   interpret=INTERPRET_PARAMS() if interpret_mode() else None)
    # padded rows: t and dy are zero there, but a = act(b1) is not; dy = 0 keeps them out of dW2
    d_w1 = jnp.einsum("mc,mh->ch", t2, dh, preferred_element_type=f32)
    d_w2 = jnp.einsum("mh,mc->hc", a, dy2, preferred_element_type=f32)
    dx, d_params = norm_vjp(grad_t[:m].reshape(x.shape))
    if residual:
        dx = (dx.astype(f32) + dy.astype(f32)).astype(x.dtype)
    d_params = d_params._replace(
        w_expand=d_w1.astype(params.w_expand.dtype), b_expand=dh[:m].sum(0, dtype=f32).astype(params.b_expand.dtype),
        w_project=d_w2.astype(params.w_project.dtype), b_project=dy2.sum(0, dtype=f32).astype(params.b_project.dtype))
    return dx, d_params
