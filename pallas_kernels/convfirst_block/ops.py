"""The ConvFirst block op with its implementations: `convfirst_block(x, params, impl=...)`."""
from __future__ import annotations

from pallas_kernels.convfirst_block.reference import ConvFirstParams, convfirst_block_reference
from pallas_kernels.registry import BlockOp

CONVFIRST_BLOCK = BlockOp("convfirst_block", convfirst_block_reference)


def convfirst_block(x, params: ConvFirstParams, *, group_width: int, act: str = "silu",
                    residual: bool = True, ln_eps: float = 1e-6, impl="auto", bwd_impl: str = "xla",
                    config=None):
    """y = [x +] project(act(expand(norm(gconv_kxk(x))))) on NHWC x; see reference.py for the math."""
    return CONVFIRST_BLOCK(x, params, impl=impl, bwd_impl=bwd_impl, config=config,
                           group_width=group_width, act=act, residual=residual, ln_eps=ln_eps)
