"""The fused ConvFirst backward against `jax.vjp` of the reference (CPU, Pallas interpret mode), its
lowering for an abstract H100, and forward/backward selection through the registry.

Interpret mode fills unwritten outputs with NaN, so every gradient being finite proves each tile,
partial sum and pixel was written. Gradients are compared with the float32 reference on the same
rounded inputs; the depth is the hidden width (the longest accumulation per output before the
pixel sums).
"""
import functools

import jax
import jax.numpy as jnp
import pytest

from kernel_checks import assert_close, assert_grads_close, normal, random_params, reference_grads, rounded, seed_of
from pallas_kernels import CONVFIRST_BLOCK, MBCONV_BLOCK, UnsupportedError, convfirst_block
from pallas_kernels.common import lower_for_h100
from pallas_kernels.convfirst_block import configs, fused_bwd_triton
from pallas_kernels.convfirst_block.configs import BwdConfig
from pallas_kernels.problems import BlockProblem

BF16, F16 = jnp.bfloat16, jnp.float16


def cf(batch, h, w, c, hidden, k=3, gw=8, **kw) -> BlockProblem:
    return BlockProblem("convfirst_block", batch, h, w, c, hidden, kernel_size=k, group_width=gw, **kw)


# every k and group width, LN on and off, residual on and off, batch 1 and 2, odd sizes; the small
# explicit configs force several dgrad tiles, a partial last tile and several wgrad pixel ranges.
CASES = [
    (cf(2, 5, 7, 32, 128, layer_norm=True), None, BF16),
    (cf(1, 6, 5, 16, 64, k=7, gw=1, act="gelu", layer_norm=True, residual=False), None, BF16),
    (cf(2, 4, 5, 32, 128, k=5, gw=16, act="gelu_tanh"), BwdConfig(16, 32, 4, 32, 16, 3, 4, 2), BF16),
    (cf(1, 7, 3, 64, 256, layer_norm=True), BwdConfig(32, 64, 4, 64, 16, 0, 4, 2), F16),
    (cf(2, 3, 3, 32, 64, act="relu"), None, BF16),
]


def _inputs(prob, dtype):
    seed = seed_of("bwd", prob.label(), jnp.dtype(dtype).name, prob.residual)
    params = rounded(random_params(prob, seed), dtype)
    x = normal(seed + 1, prob.x_shape()).astype(dtype)
    dy = normal(seed + 2, prob.x_shape()).astype(dtype)
    return x, params, dy


@pytest.mark.parametrize("prob,config,dtype", CASES, ids=[
    f"{p.label()}{'' if p.residual else '_nores'}_{jnp.dtype(d).name}" for p, _, d in CASES])
def test_fused_backward_matches_reference(prob, config, dtype):
    x, params, dy = _inputs(prob, dtype)
    bwd = jax.jit(functools.partial(fused_bwd_triton.convfirst_fused_bwd, config=config, **prob.static()))
    assert_grads_close(bwd(x, params, dy), reference_grads(CONVFIRST_BLOCK, prob, x, params, dy), prob, dtype)


@pytest.mark.parametrize("impl,bwd_impl", [("pallas_fused", "pallas_fused"), ("xla", "pallas_fused"),
                                           ("pallas_fused", "xla")])
def test_forward_and_backward_are_chosen_separately(impl, bwd_impl):
    """jax.grad through the op's custom_vjp with every fwd/bwd pairing gives the reference gradients."""
    prob = cf(1, 5, 6, 32, 128, layer_norm=True)
    x, params, dy = _inputs(prob, BF16)
    op = functools.partial(convfirst_block, impl=impl, bwd_impl=bwd_impl, **prob.static())

    def loss(a, p):
        return jnp.sum(op(a, p).astype(jnp.float32) * dy.astype(jnp.float32))

    got = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, params)
    assert_grads_close(got, reference_grads(CONVFIRST_BLOCK, prob, x, params, dy), prob, BF16)


def test_transposed_conv_weights_give_the_input_gradient():
    """gconv with the flipped, group-transposed weights is the transpose of the grouped conv."""
    from pallas_kernels.convfirst_block.reference import grouped_conv

    for k, gw in ((3, 8), (5, 1), (3, 16)):
        w = normal(seed_of("wt", k, gw), (k, k, gw, 32))
        x, dt = normal(1, (1, 6, 7, 32)), normal(2, (1, 6, 7, 32))
        with jax.default_matmul_precision("highest"):
            _, vjp = jax.vjp(lambda a: grouped_conv(a, w, gw), x)
            via_transpose = grouped_conv(dt, fused_bwd_triton.transposed_conv_weights(w, gw), gw)
        assert_close(via_transpose, vjp(dt)[0], jnp.float32, k * k * gw)


def test_forced_backward_on_unsupported_shape_says_why():
    prob = cf(1, 4, 4, 48, 192)  # C=48: not a power of two
    x, params, dy = _inputs(prob, BF16)
    op = functools.partial(convfirst_block, impl="xla", bwd_impl="pallas_fused", **prob.static())
    with pytest.raises(UnsupportedError, match="backward bwd_impl='pallas_fused'.*power of two"):
        jax.grad(lambda a: op(a, params).astype(jnp.float32).sum())(x)
    with pytest.raises(UnsupportedError, match="wgrad_chunk"):
        fused_bwd_triton.convfirst_fused_bwd(*_inputs(cf(1, 4, 4, 32, 128), BF16),
                                             config=BwdConfig(wgrad_chunk=48), **prob.static())


def test_unknown_backward_names_list_the_valid_ones():
    prob = cf(1, 4, 4, 32, 128)
    x, params, _ = _inputs(prob, BF16)
    with pytest.raises(ValueError, match="unknown backward implementation 'fused'.*valid: xla, xla_native, "
                                         "pallas_fused, mosaic_mlp, auto"):
        convfirst_block(x, params, bwd_impl="fused", **prob.static())
    assert MBCONV_BLOCK.bwd_names == ("xla", "xla_native")


def test_auto_backward_is_xla_on_cpu_and_falls_back_visibly():
    prob = cf(1, 4, 4, 32, 128)
    x, params, _ = _inputs(prob, BF16)
    assert CONVFIRST_BLOCK.select("auto", x, params, bwd=True, **prob.static()).name == "xla"
    wide = cf(1, 4, 4, 48, 192)
    xw, pw, _ = _inputs(wide, BF16)
    chosen = CONVFIRST_BLOCK.select(("pallas_fused", "xla"), xw, pw, bwd=True, **wide.static())
    assert chosen.name == "xla"


def test_auto_backward_of_an_xla_forward_is_its_own_autodiff():
    """impl='xla_native' with bwd_impl='auto' stays a plain XLA baseline (no custom VJP, no kernel)
    whatever 'auto' would pick for the backward on its own."""
    prob = cf(1, 4, 4, 32, 128)
    x, params, _ = _inputs(prob, BF16)
    for impl in ("xla", "xla_native"):
        jaxpr = str(jax.make_jaxpr(lambda a: convfirst_block(a, params, impl=impl, **prob.static()))(x))
        assert "custom_vjp" not in jaxpr
    jaxpr = str(jax.make_jaxpr(lambda a: convfirst_block(a, params, impl="xla_native", bwd_impl="xla",
                                                         **prob.static()))(x))
    assert "custom_vjp" in jaxpr  # a forced pairing still goes through the op's VJP


@pytest.mark.parametrize("c,hidden,hw", [(64, 256, 56), (128, 512, 28), (256, 1024, 14)])
def test_backward_lowers_for_h100(c, hidden, hw):
    """The heuristic config of every convfirst_tiny_ln stage the fused backward supports lowers."""
    prob = cf(128, hw, hw, c, hidden, layer_norm=True)
    x = jax.ShapeDtypeStruct(prob.x_shape(), BF16)
    params = jax.eval_shape(prob.make_params, jax.random.key(0))
    bwd = functools.partial(fused_bwd_triton.convfirst_fused_bwd, **prob.static())
    text = lower_for_h100(bwd, x, params, x)
    assert "convfirst_bwd_dgrad" in text and "convfirst_bwd_wgrad" in text


def test_bwd_candidates_are_valid_and_start_at_the_heuristic():
    for c, hidden in ((64, 256), (256, 1024)):
        cands = configs.bwd_candidates(c, hidden)
        assert cands[0] == configs.bwd_heuristic(c, hidden) and len(cands) > 4
        assert all(fused_bwd_triton._config_reason(cfg, c, hidden) is None for cfg in cands)
