"""The MBConv block op with its implementations: `mbconv_block(x, params, impl=...)`."""
from __future__ import annotations

import logging

from pallas_kernels.mbconv_block.reference import MBConvParams, mbconv_block_reference
from pallas_kernels.registry import AUTO, BlockOp, Implementation

# Without a tuning-cache entry, 'auto' prefers the fused kernel only for blocks without expansion
# (E=1): it recomputes the expansion k*k times per pixel and was slower than XLA on every E=6
# EfficientNet-B0 stage on the H100, faster (2.7x) at 112x112x32 E=1 (benchmarks/results/).
MBCONV_BLOCK = BlockOp("mbconv_block", mbconv_block_reference,
                      auto_order=lambda x, p, static: (("pallas_fused",) if p.w_expand is None else ()) + ("xla",))

try:  # Pallas kernels; a jax without the Pallas Triton backend leaves the op usable with xla
    from pallas_kernels.mbconv_block import configs, fused_triton, layerwise
except ImportError as err:
    logging.getLogger("pallas_kernels").warning("mbconv_block: Pallas implementations unavailable: %s", err)
else:
    MBCONV_BLOCK.register(Implementation(
        "pallas_fused", fused_triton.mbconv_fused, check=fused_triton.check, interpretable=True,
        config_cls=configs.FusedConfig,
        candidates=lambda prob, p: configs.candidates(prob.x_shape(), p, **prob.static())))
    MBCONV_BLOCK.register(Implementation(
        "pallas_layerwise", layerwise.mbconv_layerwise, check=layerwise.check, interpretable=True,
        config_cls=layerwise.LayerwiseConfig,
        candidates=lambda prob, p: layerwise.candidates(prob.x_shape(), p, **prob.static())))


def mbconv_block(x, params: MBConvParams, *, group_width: int = 1, stride: int = 1, act: str = "silu",
                 residual: bool = True, impl=AUTO, bwd_impl=AUTO, config=None):
    """y = [x +] project(se(act(gconv_kxk(act(expand(x)))))) on NHWC x; see reference.py.
    The backward is XLA's ('auto' and 'xla'): no fused MBConv backward exists."""
    return MBCONV_BLOCK(x, params, impl=impl, bwd_impl=bwd_impl, config=config,
                        group_width=group_width, stride=stride, act=act, residual=residual)
