"""The MBConv block op with its implementations: `mbconv_block(x, params, impl=...)`."""
from __future__ import annotations

from pallas_kernels.mbconv_block.reference import MBConvParams, mbconv_block_reference
from pallas_kernels.registry import BlockOp

MBCONV_BLOCK = BlockOp("mbconv_block", mbconv_block_reference)


def mbconv_block(x, params: MBConvParams, *, group_width: int = 1, stride: int = 1, act: str = "silu",
                 residual: bool = True, impl="auto", bwd_impl: str = "xla", config=None):
    """y = [x +] project(se(act(gconv_kxk(act(expand(x)))))) on NHWC x; see reference.py."""
    return MBCONV_BLOCK(x, params, impl=impl, bwd_impl=bwd_impl, config=config,
                        group_width=group_width, stride=stride, act=act, residual=residual)
