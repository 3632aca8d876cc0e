"""Pallas block-fusion kernels for ConvFirst and MBConv blocks, with plain-JAX references and an
implementation registry (`impl='xla' | 'xla_native' | 'pallas_fused' | 'mosaic_mlp' |
'pallas_layerwise' | 'auto'`)."""
from pallas_kernels.convfirst_block.ops import CONVFIRST_BLOCK, convfirst_block
from pallas_kernels.convfirst_block.reference import ConvFirstParams
from pallas_kernels.mbconv_block.ops import MBCONV_BLOCK, mbconv_block
from pallas_kernels.mbconv_block.reference import MBConvParams, SqueezeExcite
from pallas_kernels.registry import AUTO, UnsupportedError

OPS = {op.name: op for op in (CONVFIRST_BLOCK, MBCONV_BLOCK)}

__all__ = ["AUTO", "CONVFIRST_BLOCK", "ConvFirstParams", "MBCONV_BLOCK", "MBConvParams", "OPS",
           "SqueezeExcite", "UnsupportedError", "convfirst_block", "mbconv_block"]
