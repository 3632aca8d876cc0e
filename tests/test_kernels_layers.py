"""Layer-wise Pallas kernels (1x1 GEMM, grouped conv) and the layer-wise ConvFirst op, on CPU.

Kernels run in Pallas interpret mode, which fills unwritten outputs with NaN, so a finite output
proves every pixel/channel was stored. References run in float32 on the same rounded inputs.
Every candidate config is also lowered for an abstract H100 (the real Triton lowering).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels import CONVFIRST_BLOCK, UnsupportedError, convfirst_block
from kernel_checks import assert_close, normal, random_params, rounded, seed_of
from pallas_kernels.common import interpret_mode, lower_for_h100
from pallas_kernels.convfirst_block import layerwise
from pallas_kernels.convfirst_block.reference import activation, dense, grouped_conv
from pallas_kernels.layers import gconv, gemm
from pallas_kernels.layers.configs import GConvConfig, GemmConfig, gconv_candidates, gemm_candidates
from pallas_kernels.problems import BlockProblem

BF16, F16 = jnp.bfloat16, jnp.float16


def test_interpret_mode_poisons_unwritten_outputs():
    """The premise of the finiteness checks: an output the kernel never stores reads as NaN."""
    assert interpret_mode()

    def kernel(x_ref, o_ref):
        pltriton.store(o_ref.at[pl.ds(0, 16)], x_ref[pl.ds(0, 16)])  # half of the output

    x = jnp.ones((32,), jnp.float32)
    y = pl.pallas_call(kernel, out_shape=x, interpret=True,
                       compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=1))(x)
    assert np.isfinite(y[:16]).all() and np.isnan(y[16:]).all()


GEMM_CASES = [  # leading shape, K, N, act, residual, dtype, config (None: heuristic)
    ((2, 7, 9), 24, 144, "silu", False, BF16, None),
    ((2, 7, 9), 144, 24, "none", True, BF16, None),
    ((1, 5, 5), 40, 96, "gelu", False, F16, None),
    ((3, 5), 80, 20, "gelu_tanh", True, BF16, GemmConfig(32, 16, 16, 4, 2)),  # 5 K steps, 2 N tiles
    ((1, 3, 5), 112, 40, "relu", False, BF16, GemmConfig(16, 32, 32, 4, 3)),  # K 112 = 3.5 steps
]


@pytest.mark.parametrize("lead,k,n,act,residual,dtype,config", GEMM_CASES)
def test_gemm_matches_reference(lead, k, n, act, residual, dtype, config):
    seed = seed_of(lead, k, n)
    x, w, b, r = normal(seed, (*lead, k)), normal(seed + 1, (k, n), k), normal(seed + 2, (n,)), \
        normal(seed + 3, (*lead, n))
    x, w, b, r = rounded((x, w, b, r), dtype)
    kernel = jax.jit(functools.partial(gemm, act=act, config=config))  # one compile, not op by op
    y = kernel(x.astype(dtype), w, b, residual=r.astype(dtype) if residual else None)
    with jax.default_matmul_precision("highest"):
        ref = activation(act)(dense(x, w, b)) + (r if residual else 0.0)
    assert_close(y, np.asarray(ref), dtype, k)


GCONV_CASES = [  # x shape, k, group width, stride, act, dtype, config (None: heuristic)
    ((2, 7, 9, 24), 3, 1, 1, "silu", BF16, None),
    ((1, 5, 5, 24), 5, 1, 1, "none", F16, None),
    ((2, 3, 5, 24), 7, 1, 1, "gelu", BF16, None),
    ((2, 7, 9, 40), 3, 8, 1, "none", BF16, None),
    ((1, 5, 5, 40), 7, 8, 1, "relu", F16, None),
    ((2, 7, 9, 48), 3, 16, 1, "none", BF16, None),
    ((1, 3, 5, 48), 5, 16, 1, "silu", BF16, None),
    ((2, 8, 9, 24), 3, 1, 2, "silu", BF16, None),  # stride 2: XLA's asymmetric 'SAME' padding
    ((1, 7, 9, 40), 5, 8, 2, "none", BF16, None),
    ((2, 7, 9, 40), 3, 8, 1, "none", BF16, GConvConfig(4, 4, block_c=16, conv_chunk=16)),  # 3 blocks
    ((1, 5, 5, 40), 3, 8, 1, "none", BF16, GConvConfig(4, 4, block_c=64, conv_chunk=16)),  # 4-way split
    ((1, 5, 5, 24), 3, 1, 1, "silu", BF16, GConvConfig(2, 4, block_c=16, num_stages=1)),  # tiny tile
]


@pytest.mark.parametrize("shape,k,gw,stride,act,dtype,config", GCONV_CASES)
def test_gconv_matches_reference(shape, k, gw, stride, act, dtype, config):
    seed = seed_of(shape, k, gw, stride)
    c = shape[-1]
    x, w, b = rounded((normal(seed, shape), normal(seed + 1, (k, k, gw, c), k * k * gw),
                       normal(seed + 2, (c,))), dtype)
    kernel = jax.jit(functools.partial(gconv, group_width=gw, stride=stride, act=act, config=config))
    y = kernel(x.astype(dtype), w, b)
    with jax.default_matmul_precision("highest"):
        ref = activation(act)(grouped_conv(x, w, gw, stride) + b)
    assert_close(y, np.asarray(ref), dtype, k * k * gw)


CONVFIRST_CASES = [  # the layer-wise op: gconv -> [LayerNorm] -> expand -> project (+ residual)
    BlockProblem("convfirst_block", 2, 7, 9, 24, 96, kernel_size=3, group_width=8),
    BlockProblem("convfirst_block", 1, 5, 5, 40, 160, kernel_size=7, group_width=1, act="gelu",
                 layer_norm=True),
    BlockProblem("convfirst_block", 1, 3, 5, 48, 96, kernel_size=5, group_width=16, act="relu",
                 residual=False),
]


@pytest.mark.parametrize("prob", CONVFIRST_CASES, ids=lambda p: p.label())
@pytest.mark.parametrize("dtype", [BF16])
def test_convfirst_layerwise_matches_reference(prob, dtype):
    seed = seed_of(prob.label())
    params = rounded(random_params(prob, seed), dtype)
    x = normal(seed + 1, prob.x_shape()).astype(dtype)
    y = jax.jit(functools.partial(convfirst_block, impl="pallas_layerwise", **prob.static()))(x, params)
    with jax.default_matmul_precision("highest"):
        ref = CONVFIRST_BLOCK.reference(x.astype(jnp.float32), params, **prob.static())
    assert_close(y, np.asarray(ref), dtype, prob.hidden)


def test_convfirst_layerwise_unsupported_cases_say_why():
    prob = CONVFIRST_CASES[0]
    params, x = random_params(prob, 0), normal(1, prob.x_shape())
    with pytest.raises(UnsupportedError, match="dtype float32"):
        convfirst_block(x, params, impl="pallas_layerwise", **prob.static())
    with pytest.raises(UnsupportedError, match="group width 4"):
        convfirst_block(x.astype(BF16), params, impl="pallas_layerwise",
                        **{**prob.static(), "group_width": 4})


def test_config_validation():
    with pytest.raises(ValueError, match="power of two"):
        GemmConfig(block_m=48)
    with pytest.raises(ValueError, match=">= 16"):
        GemmConfig(block_k=8)
    assert "multiple of group_width" in GConvConfig(block_c=32, conv_chunk=16).reason(32)
    assert "divide block_c" in GConvConfig(block_c=16, conv_chunk=32).reason(8)
    x = jnp.ones((1, 5, 5, 32), BF16)
    with pytest.raises(UnsupportedError, match="tensor-core dot"):
        gconv(x, jnp.ones((3, 3, 8, 32)), jnp.ones(32), group_width=8,
              config=GConvConfig(2, 4, block_c=16, conv_chunk=16))


def _sds(shape, dtype=BF16):
    return jax.ShapeDtypeStruct(shape, dtype)


# Real (EfficientNet-B0 / ConvFirst) sizes: lowering costs no execution.
GEMM_LOWER = (8 * 56 * 56, 24, 144)
GCONV_LOWER = [((8, 56, 56, 144), 3, 1, 1), ((8, 28, 28, 128), 3, 8, 1), ((8, 14, 14, 96), 5, 16, 1),
               ((8, 56, 56, 144), 5, 1, 2)]


@pytest.mark.parametrize("config", gemm_candidates(*GEMM_LOWER)[:24], ids=str)  # nearest 24
def test_gemm_candidates_lower_for_h100(config):
    m, k, n = GEMM_LOWER
    text = lower_for_h100(functools.partial(gemm, act="silu", config=config),
                          _sds((m, k)), _sds((k, n), jnp.float32), _sds((n,), jnp.float32))
    assert "triton" in text


@pytest.mark.parametrize("shape,k,gw,stride,config", [
    (s, k, gw, st, cfg) for s, k, gw, st in GCONV_LOWER
    for cfg in gconv_candidates(-(-s[1] // st), -(-s[2] // st), s[3], gw)[:6]])  # nearest 6
def test_gconv_candidates_lower_for_h100(shape, k, gw, stride, config):
    c = shape[-1]
    fn = functools.partial(gconv, group_width=gw, stride=stride, act="silu", config=config)
    text = lower_for_h100(fn, _sds(shape), _sds((k, k, gw, c), jnp.float32), _sds((c,), jnp.float32))
    assert "triton" in text


def test_convfirst_layerwise_candidates_lower_for_h100():
    prob = BlockProblem("convfirst_block", 8, 28, 28, 128, 512, kernel_size=3, group_width=8)
    params = jax.eval_shape(prob.make_params, jax.random.key(0))
    configs = layerwise.candidates(prob.x_shape(), params, **prob.static())
    assert configs[0] == layerwise.heuristic(prob.x_shape(), params, **prob.static())
    for cfg in configs[:4]:
        fn = functools.partial(layerwise.convfirst_layerwise, config=cfg, **prob.static())
        assert "triton" in lower_for_h100(fn, _sds(prob.x_shape()), params)
