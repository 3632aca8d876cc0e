"""The ConvFirst block op with its implementations: `convfirst_block(x, params, impl=...)`."""
from __future__ import annotations

import logging

from pallas_kernels.convfirst_block import bwd_mosaic, configs, fused_bwd_triton, fused_triton, mlp_mosaic
from pallas_kernels.convfirst_block.reference import ConvFirstParams, convfirst_block_reference, widen_groups
from pallas_kernels.registry import AUTO, BlockOp, Implementation

# Without a tuning-cache entry, 'auto' tries, in order: mosaic_mlp (Hopper, C a multiple of 64 up to
# 256: it beat every other implementation at all three of convfirst_tiny's stage shapes on the H200),
# the Triton fused kernel up to C=128 (3.2x / 1.7x over 'xla' on the H100 at 56x56x64 / 28x28x128,
# slower at C=256), then xla_native (faster than 'xla' at every measured ConvFirst and ConvNeXt shape).
# Each refusal is logged once per shape. The backward prefers mosaic_mlp (forward + backward of a
# convfirst_tiny_ln block 1.22x / 1.08x / 1.13x faster than xla_native's at 56x56x64 / 28x28x128 /
# 14x14x256 on the H200, run ZJ), then autodiff in the compute dtype: the xla_native training step
# (30.5 ms, H200) beat the Triton fused backward's (54-57 ms, H100) by far more than the two parts
# differ; bwd_impl='pallas_fused' still forces the Triton one.
# Measurements: benchmarks/results/mosaic_mlp, benchmarks/results/fused_backward, docs/kernels.md.
FUSED_PREFERRED_MAX_C = 128


def _auto_order(x, params, static) -> tuple[str, ...]:
    fused = ("pallas_fused",) if x.shape[-1] <= FUSED_PREFERRED_MAX_C else ()
    return ("mosaic_mlp",) + fused + ("xla_native", "xla")


def _native_conv(fn):
    """fn (a Triton forward or its check) on the conv weight at its group width: inference copies on a
    GPU hold it widened for cuDNN (reference.compute_conv_weight); these kernels build their own
    block-diagonal operands from the native form."""
    def call(x, params, *args, group_width, **kw):
        return fn(x, params.with_native_conv(group_width), *args, group_width=group_width, **kw)
    return call


def _native_conv_bwd(fn):
    """A Triton backward on the native conv weight, its weight gradient widened back to the form
    given (block-diagonal: the widened weight's zeros stay zero under a gradient step)."""
    def call(x, params, dy, *args, group_width, **kw):
        dx, grads = fn(x, params.with_native_conv(group_width), dy, *args, group_width=group_width, **kw)
        if (width := params.w_conv.shape[2]) != grads.w_conv.shape[2]:
            grads = grads._replace(w_conv=widen_groups(grads.w_conv, group_width, width))
        return dx, grads
    return call


CONVFIRST_BLOCK = BlockOp("convfirst_block", convfirst_block_reference, auto_order=_auto_order,
                          bwd_auto_order=lambda x, params, static: ("mosaic_mlp", "xla_native", "xla"))
CONVFIRST_BLOCK.register_bwd(Implementation(
    "pallas_fused", _native_conv_bwd(fused_bwd_triton.convfirst_fused_bwd), check=_native_conv(fused_bwd_triton.check),
    interpretable=True, config_cls=configs.BwdConfig, candidates=lambda prob, p: configs.bwd_candidates(prob.c, prob.hidden)))
CONVFIRST_BLOCK.register_bwd(Implementation(
    "mosaic_mlp", bwd_mosaic.convfirst_mosaic_mlp_bwd, check=bwd_mosaic.check, interpretable=True,
    config_cls=bwd_mosaic.MosaicBwdConfig, candidates=lambda prob, p: bwd_mosaic.candidates(prob.c, prob.hidden)))
CONVFIRST_BLOCK.register(Implementation(
    "pallas_fused", _native_conv(fused_triton.convfirst_fused), check=_native_conv(fused_triton.check),
    interpretable=True,
    config_cls=configs.FusedConfig,
    candidates=lambda prob, p: configs.candidates(prob.c, prob.hidden, prob.group_width, prob.h, prob.w)))
CONVFIRST_BLOCK.register(Implementation(
    "mosaic_mlp", mlp_mosaic.convfirst_mosaic_mlp, check=mlp_mosaic.check, interpretable=True,
    config_cls=mlp_mosaic.MosaicMLPConfig, candidates=lambda prob, p: mlp_mosaic.candidates(prob.c, prob.hidden)))

try:  # layer-wise Pallas kernels; a jax without the Pallas Triton backend leaves the op usable with xla
    from pallas_kernels.convfirst_block import layerwise
except ImportError as err:
    logging.getLogger("pallas_kernels").warning("convfirst_block: pallas_layerwise unavailable: %s", err)
else:
    CONVFIRST_BLOCK.register(Implementation(
        "pallas_layerwise", _native_conv(layerwise.convfirst_layerwise), check=_native_conv(layerwise.check),
        interpretable=True,
        config_cls=layerwise.LayerwiseConfig,
        candidates=lambda prob, p: layerwise.candidates(prob.x_shape(), p, **prob.static())))


def convfirst_block(x, params: ConvFirstParams, *, group_width: int, act: str = "silu",
                    residual: bool = True, ln_eps: float = 1e-6, impl=AUTO, bwd_impl=AUTO, config=None,
                    bwd_config=None):
    """y = [x +] project(act(expand(norm(gconv_kxk(x))))) on NHWC x; see reference.py for the math.
    `impl` runs the forward, `bwd_impl` the backward (see pallas_kernels.registry)."""
    return CONVFIRST_BLOCK(x, params, impl=impl, bwd_impl=bwd_impl, config=config, bwd_config=bwd_config,
                           group_width=group_width, act=act, residual=residual, ln_eps=ln_eps)
