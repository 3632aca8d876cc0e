"""MBConv implementations ('pallas_fused', 'pallas_layerwise') against the reference, on CPU.

Kernels run in Pallas interpret mode, which fills unwritten outputs with NaN, so a finite output
proves every pixel/channel was stored (test_kernels_layers.py checks that premise). References run
in float32 on the same rounded inputs. Candidate configs are lowered for an abstract H100.
"""
import functools

import jax
import jax.numpy as jnp
import pytest

from kernel_checks import assert_close, normal, random_params, rounded, seed_of
from pallas_kernels import AUTO, MBCONV_BLOCK, UnsupportedError, mbconv_block
from pallas_kernels.common import lower_for_h100
from pallas_kernels.mbconv_block import configs, fused_triton, layerwise
from pallas_kernels.mbconv_block.configs import FusedConfig
from pallas_kernels.problems import BlockProblem

BF16, F16 = jnp.bfloat16, jnp.float16


def mb(batch, h, w, c, hidden, k, gw, **kw) -> BlockProblem:
    return BlockProblem("mbconv_block", batch, h, w, c, hidden, kernel_size=k, group_width=gw, **kw)


FUSABLE = [  # every supported k x group width, E = 1, residual on/off, real channel counts
    mb(2, 7, 9, 24, 48, 3, 1),
    mb(1, 5, 5, 40, 80, 5, 1, act="gelu", cout=24, residual=False),  # hidden 80: padded chunk
    mb(2, 3, 5, 40, 80, 3, 8),
    mb(1, 7, 9, 24, 48, 5, 8, cout=40, residual=False),
    mb(1, 5, 5, 32, 96, 3, 16, act="relu"),
    mb(2, 3, 5, 24, 48, 5, 16, act="gelu_tanh"),
    mb(2, 7, 9, 24, 24, 3, 1, expand=False),  # E = 1: the conv runs on x
]
LAYERWISE_ONLY = [  # squeeze-excite, stride 2: EfficientNet blocks the fused kernel cannot run
    mb(2, 8, 9, 24, 48, 3, 1, se_channels=6, stride=2, cout=40, residual=False),
    mb(1, 7, 9, 32, 32, 3, 1, expand=False, se_channels=8, cout=16, residual=False),
    mb(1, 7, 7, 40, 80, 5, 8, stride=2, cout=48, residual=False),
]


def run_and_compare(prob, impl, dtype, config=None):
    seed = seed_of(prob.label(), jnp.dtype(dtype).name)
    params = rounded(random_params(prob, seed), dtype)
    x = normal(seed + 1, prob.x_shape()).astype(dtype)
    fn = jax.jit(functools.partial(mbconv_block, impl=impl, config=config, **prob.static()))
    with jax.default_matmul_precision("highest"):
        ref = MBCONV_BLOCK.reference(x.astype(jnp.float32), params, **prob.static())
    assert_close(fn(x, params), ref, dtype, max(prob.hidden, prob.c))


@pytest.mark.parametrize("prob", FUSABLE, ids=lambda p: p.label())
def test_fused_matches_reference(prob):
    run_and_compare(prob, "pallas_fused", BF16)


# The layer kernels themselves are covered case by case in test_kernels_layers.py; here the block
# composition: plain, grouped without residual, E = 1, squeeze-excite, stride 2.
@pytest.mark.parametrize("prob", FUSABLE[::3] + LAYERWISE_ONLY, ids=lambda p: p.label())
def test_layerwise_matches_reference(prob):
    run_and_compare(prob, "pallas_layerwise", BF16)


@pytest.mark.parametrize("prob", FUSABLE[::3] + LAYERWISE_ONLY, ids=lambda p: p.label())
def test_xla_native_matches_reference(prob):
    run_and_compare(prob, "xla_native", BF16)


@pytest.mark.parametrize("impl", ["pallas_fused", "pallas_layerwise", "xla_native"])
def test_float16(impl):
    run_and_compare(mb(1, 5, 7, 24, 72, 3, 8), impl, F16)


@pytest.mark.parametrize("config", [FusedConfig(4, 8, 16, 4, 1), FusedConfig(8, 4, 64, 8, 2)], ids=str)
def test_fused_explicit_configs(config):
    """Several hidden chunks with a masked tail, and one chunk wider than the hidden width."""
    run_and_compare(mb(2, 7, 9, 24, 40, 3, 8), "pallas_fused", BF16, config)


UNSUPPORTED = [  # problem changes, expected words in the error
    (dict(se_channels=6), "squeeze-excite"),
    (dict(stride=2, residual=False), "stride 2"),
    (dict(kernel_size=7), "kernel size 7"),
    (dict(group_width=4), "group width 4"),
    (dict(cout=32), "residual needs C_out == C_in"),
]


@pytest.mark.parametrize("changes,words", UNSUPPORTED, ids=lambda v: str(v))
def test_fused_unsupported_says_why(changes, words):
    prob = mb(1, 5, 5, 24, 48, 3, 1).replace(**changes)
    x = normal(0, prob.x_shape()).astype(BF16)
    with pytest.raises(UnsupportedError, match=words):
        mbconv_block(x, random_params(prob, 1), impl="pallas_fused", **prob.static())


def test_unsupported_dtype_and_config_say_why():
    prob = mb(1, 5, 5, 24, 48, 3, 8)
    params, x = random_params(prob, 0), normal(1, prob.x_shape())
    for impl in ("pallas_fused", "pallas_layerwise"):
        with pytest.raises(UnsupportedError, match="dtype float32"):
            mbconv_block(x, params, impl=impl, **prob.static())
    with pytest.raises(ValueError, match="< 16 pixels"):
        FusedConfig(tile_h=2, tile_w=4)
    assert "multiple of group_width" in FusedConfig(block_e=16).reason(32)


def test_auto_order_follows_the_h100_measurements_and_falls_back_visibly():
    """Without a cache entry, fused first only for E=1 blocks (where it beat XLA on the H100);
    an E=1 block with squeeze-excite then falls back to xla, with the reason."""
    se = mb(1, 5, 5, 24, 24, 3, 1, expand=False, se_channels=6)
    x = jax.ShapeDtypeStruct(se.x_shape(), BF16)
    params = random_params(se, 0)
    names, may_fall_back = MBCONV_BLOCK.candidates(AUTO, x, params, "gpu", se.static())
    assert names == ("pallas_fused", "xla") and may_fall_back
    assert "squeeze-excite" in MBCONV_BLOCK.why_unsupported("pallas_fused", x, params, "gpu", **se.static())
    assert MBCONV_BLOCK.select(AUTO, x, params, **se.static()).name == "xla"  # CPU: always xla
    expanded = mb(1, 5, 5, 24, 144, 3, 1)
    xe = jax.ShapeDtypeStruct(expanded.x_shape(), BF16)
    names, _ = MBCONV_BLOCK.candidates(AUTO, xe, random_params(expanded, 1), "gpu", expanded.static())
    assert names == ("xla",)


# Real EfficientNet-B0 / ConvFirst-like sizes (lowering costs no execution): (problem, how many of
# the ranked candidates to lower -- the heuristic first, then its nearest neighbours).
LOWER = [
    (mb(8, 56, 56, 24, 144, 3, 1), 12),
    (mb(8, 14, 14, 112, 672, 5, 1), 6),
    (mb(8, 7, 7, 192, 1152, 5, 1), 4),
    (mb(8, 28, 28, 64, 256, 3, 8), 6),
    (mb(8, 112, 112, 32, 32, 3, 1, expand=False, cout=16, residual=False), 4),
]


def _abstract(prob):
    return jax.ShapeDtypeStruct(prob.x_shape(), BF16), jax.eval_shape(prob.make_params, jax.random.key(0))


@pytest.mark.parametrize("prob,config", [
    (p, c) for p, n in LOWER
    for c in configs.candidates(p.x_shape(), jax.eval_shape(p.make_params, jax.random.key(0)),
                                **p.static())[:n]], ids=str)
def test_fused_candidates_lower_for_h100(prob, config):
    x, params = _abstract(prob)
    fn = functools.partial(fused_triton.mbconv_fused, config=config, **prob.static())
    assert "triton" in lower_for_h100(fn, x, params)


@pytest.mark.parametrize("prob", [LOWER[0][0], LOWER[4][0].replace(se_channels=8, stride=2)],
                         ids=lambda p: p.label())
def test_layerwise_candidates_lower_for_h100(prob):
    x, params = _abstract(prob)
    cands = layerwise.candidates(prob.x_shape(), params, **prob.static())
    assert cands[0] == layerwise.heuristic(prob.x_shape(), params, **prob.static())
    for config in cands[:3]:
        fn = functools.partial(layerwise.mbconv_layerwise, config=config, **prob.static())
        assert "triton" in lower_for_h100(fn, x, params)
