"""The 'pallas_layerwise' MBConv op: one Pallas kernel per layer, epilogues fused.

[GEMM expand (+bias, act)] -> gconv k x k (+bias, act; stride 1 or 2) -> [squeeze-excite in plain
JAX: its global pool cannot fuse depth-first] -> GEMM project (+bias, +residual). DRAM traffic
(3 + 4E)*C elements per pixel (paper.md section 4) versus 2C fused. Covers every EfficientNet
MBConv (SE, stride 2, E = 1), unlike the fused kernel.
"""
from __future__ import annotations

import jax.numpy as jnp

from pallas_kernels.common import dtype_reason
from pallas_kernels.convfirst_block.reference import activation
from pallas_kernels.layers import gconv, gemm
from pallas_kernels.layers.configs import LayerwiseConfig, layerwise_candidates, layerwise_heuristic
from pallas_kernels.layers.gconv import gconv_reason, same_padding
from pallas_kernels.mbconv_block.reference import MBConvParams, squeeze_excite
from pallas_kernels.registry import UnsupportedError


def check(x, params: MBConvParams, *, platform=None, group_width: int = 1, stride: int = 1,
          residual: bool = True, **_) -> str | None:
    """None when the layer-wise kernels support this call, else why not."""
    if reason := dtype_reason(x):
        return reason
    hidden_shape = (*x.shape[:-1], params.w_conv.shape[-1])
    if reason := gconv_reason(hidden_shape, params.w_conv.shape, group_width, stride):
        return reason
    if residual and (stride != 1 or params.w_project.shape[1] != x.shape[-1]):
        return (f"residual needs stride 1 and C_out == C_in, got stride {stride}, "
                f"C_out {params.w_project.shape[1]}, C_in {x.shape[-1]}")
    return None


def _layer_shapes(x_shape, params: MBConvParams, group_width: int, stride: int):
    n, h, w, c = x_shape
    hidden = params.w_conv.shape[-1]
    k = params.w_conv.shape[0]
    (ho, _), (wo, _) = same_padding(h, k, stride), same_padding(w, k, stride)
    expand = None if params.w_expand is None else (n * h * w, c, hidden)
    return (ho, wo, hidden, group_width), expand, (n * ho * wo, hidden, params.w_project.shape[1])


def heuristic(x_shape, params: MBConvParams, *, group_width: int = 1, stride: int = 1,
              **_) -> LayerwiseConfig:
    return layerwise_heuristic(*_layer_shapes(x_shape, params, group_width, stride))


def candidates(x_shape, params: MBConvParams, *, group_width: int = 1, stride: int = 1,
               **_) -> list[LayerwiseConfig]:
    return layerwise_candidates(*_layer_shapes(x_shape, params, group_width, stride))


def mbconv_layerwise(x, params: MBConvParams, *, config: LayerwiseConfig | None = None,
                     group_width: int = 1, stride: int = 1, act: str = "silu", residual: bool = True):
    """The 'pallas_layerwise' implementation of `mbconv_block` (see module docstring)."""
    if reason := check(x, params, group_width=group_width, stride=stride, residual=residual):
        raise UnsupportedError(f"pallas_layerwise: {reason}")
    cfg = config or heuristic(x.shape, params, group_width=group_width, stride=stride)
    h = x if params.w_expand is None else gemm(x, params.w_expand, params.b_expand, act=act,
                                                config=cfg.expand)
    h = gconv(h, params.w_conv, params.b_conv, group_width=group_width, stride=stride, act=act,
              config=cfg.gconv)
    if params.se is not None:
        h = squeeze_excite(h.astype(jnp.float32), params.se, activation(act)).astype(x.dtype)
    return gemm(h, params.w_project, params.b_project, residual=x if residual else None,
                config=cfg.project)
