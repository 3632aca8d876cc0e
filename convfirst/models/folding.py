"""Inference-time folding of per-channel affine layers into the preceding conv/dense weights.

At inference BatchNorm is a per-output-channel affine map, so conv -> BN equals one conv with scaled
weights and a new bias; a layer scale likewise multiplies the weights and bias. Folding is what lets
a block run as one fused kernel (the block ops take BN-free parameters). Kernels have their output
channels on the last axis in both layouts we use: conv HWIO (k, k, cin/groups, cout), dense (cin, cout).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def fold_batchnorm(kernel: jax.Array, bias: jax.Array | None, bn: nnx.BatchNorm) -> tuple[jax.Array, jax.Array]:
    """(w, b) with bn(conv(x, kernel) + bias) == conv(x, w) + b under the running statistics.

    s = scale / sqrt(var + eps);  w = kernel * s;  b = (bias - mean) * s + beta.
    """
    s = jax.lax.rsqrt(bn.var[...] + bn.epsilon)
    if bn.scale is not None:
        s = s * bn.scale[...]
    b = -bn.mean[...] if bias is None else bias - bn.mean[...]
    b = b * s
    if bn.bias is not None:
        b = b + bn.bias[...]
    return kernel * s, b


def fold_scale(kernel: jax.Array, bias: jax.Array | None, gamma: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(w, b) with gamma * (x @ kernel + bias) == x @ w + b (layer scale folded into a dense layer)."""
    b = jnp.zeros_like(gamma) if bias is None else bias * gamma
    return kernel * gamma, b
