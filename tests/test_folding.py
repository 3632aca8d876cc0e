"""Inference-time folding: a block's op call with folded parameters equals its unfused Flax layers.

Every parameter and BatchNorm statistic is drawn at random (never the init values: a fresh BN is
the identity and would hide a wrong fold); inputs are random; tolerances are float32 ones.
"""
from __future__ import annotations

from math import prod

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from convfirst.models.blocks import ConvFirstBlock, MBConvBlock
from convfirst.models.folding import fold_batchnorm, fold_scale
from convfirst.models.specs import ConvFirstBlock as ConvFirstSpec
from convfirst.models.specs import MBConvBlock as MBConvSpec
from convfirst.models.specs import ModelSpec


def randomize(module: nnx.Module, seed: int) -> nnx.Module:
    """Random weights (scaled by 1/sqrt(fan_in)), biases, norm scales and BatchNorm statistics.

    Values come from NumPy and may replace abstract (nnx.eval_shape) ones: no initializer is compiled.
    """
    rng = np.random.default_rng(seed)
    for path, var in nnx.iter_graph(module):
        if isinstance(var, nnx.RngKey):
            var.set_value(jax.random.key(seed))
        elif isinstance(var, nnx.RngCount):
            var.set_value(jnp.zeros(var.shape, var.dtype))
        elif isinstance(var, (nnx.Param, nnx.BatchStat)):
            name, shape = path[-1], var.shape
            if name == "var":
                value = rng.uniform(0.3, 2.0, shape)
            elif name in ("scale", "layer_scale"):
                value = rng.uniform(0.5, 1.5, shape)
            elif name == "kernel":
                value = rng.normal(size=shape) / np.sqrt(prod(shape[:-1]))
            else:  # biases and running means
                value = 0.5 * rng.normal(size=shape)
            var.set_value(jnp.asarray(value, jnp.float32))
    return module


def make_block(spec, seed: int = 0):
    cls = ConvFirstBlock if isinstance(spec, ConvFirstSpec) else MBConvBlock
    model = ModelSpec("one_block", "test", 8, (spec,))
    return randomize(nnx.eval_shape(lambda: cls(spec, model=model, dtype=jnp.float32, rngs=nnx.Rngs(0))), seed)


@nnx.jit
def op_and_unfused(block, x):
    """The block (its op call in the current mode) and its unfused residual branch, in one compile."""
    return block(x), block.unfused(x)


def assert_close(actual, expected):
    scale = float(jnp.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=2e-6 * scale)


@pytest.mark.parametrize("groups, bias", [(1, True), (4, False)])
def test_fold_batchnorm_equals_conv_then_running_batchnorm(groups, bias):
    conv = randomize(nnx.eval_shape(lambda: nnx.Conv(16, 16, (3, 3), feature_group_count=groups,
                                                      use_bias=bias, rngs=nnx.Rngs(0))), 1)
    bn = randomize(nnx.eval_shape(lambda: nnx.BatchNorm(16, epsilon=1e-3, use_running_average=True,
                                                         rngs=nnx.Rngs(0))), 2)
    x = jax.random.normal(jax.random.key(3), (2, 6, 6, 16))
    w, b = fold_batchnorm(conv.kernel[...], None if conv.bias is None else conv.bias[...], bn)
    folded = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                          feature_group_count=groups) + b
    assert_close(folded, bn(conv(x)))


def test_fold_scale_equals_dense_then_layer_scale():
    dense = randomize(nnx.eval_shape(lambda: nnx.Linear(8, 12, rngs=nnx.Rngs(0))), 1)
    gamma = jax.random.uniform(jax.random.key(2), (12,), minval=0.5, maxval=1.5)
    x = jax.random.normal(jax.random.key(3), (5, 8))
    w, b = fold_scale(dense.kernel[...], dense.bias[...], gamma)
    assert_close(x @ w + b, dense(x) * gamma)


CONVFIRST_SPECS = [
    ConvFirstSpec(32, kernel_size=3, group_width=8, expand_ratio=4, norm="batch"),  # the ConvFirst block
    ConvFirstSpec(32, kernel_size=5, group_width=16, expand_ratio=3, norm="batch", act="relu", layer_scale=0.5),
    ConvFirstSpec(16, kernel_size=7, group_width=1, norm="layer", norm_eps=1e-6, act="gelu", layer_scale=0.7),
    ConvFirstSpec(16, kernel_size=3, group_width=8, norm="none", act="gelu_tanh"),
]


@pytest.mark.parametrize("spec", CONVFIRST_SPECS, ids=lambda s: f"{s.norm}-k{s.kernel_size}-gw{s.group_width}")
def test_convfirst_block_op_with_folded_params_equals_unfused_layers(spec):
    block = make_block(spec)
    x = jax.random.normal(jax.random.key(4), (2, 8, 8, spec.dim))
    block.eval()  # BatchNorm on running statistics; the block calls the op with folded parameters
    out, branch = op_and_unfused(block, x)
    assert_close(out, x + branch)
    if spec.norm != "batch":  # without BatchNorm training runs the op too (raw LN, layer scale folded)
        block.train()
        out, branch = op_and_unfused(block, x)
        assert_close(out, x + branch)


MBCONV_SPECS = [
    MBConvSpec(16, 16, kernel_size=3, stride=1, expand_ratio=6, se_ratio=0.25),  # EfficientNet MBConv6
    MBConvSpec(16, 24, kernel_size=5, stride=2, expand_ratio=6, se_ratio=0.25),  # TF 'SAME', stride 2
    MBConvSpec(16, 16, kernel_size=3, stride=1, expand_ratio=1, se_ratio=0.25),  # depthwise-separable
    MBConvSpec(16, 16, kernel_size=3, stride=1, expand_ratio=4, se_ratio=0.0, group_width=8),
    MBConvSpec(24, 24, kernel_size=3, stride=1, expand_ratio=3.5, se_ratio=0.0, group_width=16,
               hidden_channels=96),  # hidden width rounded up to a multiple of the group width
]


@pytest.mark.parametrize("spec", MBCONV_SPECS,
                         ids=lambda s: f"e{s.expand_ratio}-s{s.stride}-se{s.se_ratio}-gw{s.group_width}")
def test_mbconv_block_op_with_folded_params_equals_unfused_layers(spec):
    block = make_block(spec)
    x = jax.random.normal(jax.random.key(5), (2, 9, 9, spec.cin))  # odd size: asymmetric stride-2 padding
    block.eval()
    out, branch = op_and_unfused(block, x)
    assert_close(out, x + branch if spec.has_residual else branch)
