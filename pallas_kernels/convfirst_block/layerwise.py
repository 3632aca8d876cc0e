"""The 'pallas_layerwise' ConvFirst op: one Pallas kernel per layer, epilogues fused.

gconv(+bias) -> [LayerNorm in plain JAX when ln_scale is given] -> GEMM expand (+bias, act) ->
GEMM project (+bias, +residual). DRAM traffic (5 + 2E)*C elements per pixel (paper.md section 4)
versus 2C fused: the baseline that shows what block fusion buys.
"""
from __future__ import annotations

import jax.numpy as jnp

from pallas_kernels.common import dtype_reason
from pallas_kernels.convfirst_block.reference import ConvFirstParams, layer_norm
from pallas_kernels.layers import gconv, gemm
from pallas_kernels.layers.configs import LayerwiseConfig, layerwise_candidates, layerwise_heuristic
from pallas_kernels.layers.gconv import gconv_reason
from pallas_kernels.registry import UnsupportedError


def check(x, params: ConvFirstParams, *, platform=None, group_width: int, residual: bool = True,
          **_) -> str | None:
    """None when the layer-wise kernels support this call, else why not."""
    if reason := dtype_reason(x) or gconv_reason(x.shape, params.w_conv.shape, group_width):
        return reason
    if residual and params.w_project.shape[1] != x.shape[-1]:
        return f"residual needs C_out == C_in, got {params.w_project.shape[1]} != {x.shape[-1]}"
    return None


def _layer_shapes(x_shape, params: ConvFirstParams, group_width: int):
    n, h, w, c = x_shape
    m, hidden = n * h * w, params.w_expand.shape[1]
    return (h, w, c, group_width), (m, c, hidden), (m, hidden, params.w_project.shape[1])


def heuristic(x_shape, params: ConvFirstParams, *, group_width: int, **_) -> LayerwiseConfig:
    return layerwise_heuristic(*_layer_shapes(x_shape, params, group_width))


def candidates(x_shape, params: ConvFirstParams, *, group_width: int, **_) -> list[LayerwiseConfig]:
    return layerwise_candidates(*_layer_shapes(x_shape, params, group_width))


def convfirst_layerwise(x, params: ConvFirstParams, *, config: LayerwiseConfig | None = None,
                        group_width: int, act: str = "silu", residual: bool = True,
                        ln_eps: float = 1e-6):
    """The 'pallas_layerwise' implementation of `convfirst_block` (see module docstring)."""
    if reason := check(x, params, group_width=group_width, residual=residual):
        raise UnsupportedError(f"pallas_layerwise: {reason}")
    cfg = config or heuristic(x.shape, params, group_width=group_width)
    t = gconv(x, params.w_conv, params.conv_bias(), group_width=group_width, config=cfg.gconv)
    if params.ln_scale is not None:
        t = layer_norm(t.astype(jnp.float32), params.ln_scale, params.ln_bias, ln_eps).astype(x.dtype)
    h = gemm(t, params.w_expand, params.b_expand, act=act, config=cfg.expand)
    return gemm(h, params.w_project, params.b_project, residual=x if residual else None,
                config=cfg.project)
