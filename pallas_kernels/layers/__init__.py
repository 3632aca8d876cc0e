"""Layer-wise Pallas (Triton backend) kernels shared by the block ops: a k x k grouped conv and a
1x1 conv as GEMM, each with its epilogue fused."""
from pallas_kernels.layers.gconv import gconv
from pallas_kernels.layers.gemm import gemm

__all__ = ["gconv", "gemm"]
