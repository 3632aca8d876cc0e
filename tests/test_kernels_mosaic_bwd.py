"""The 'mosaic_mlp' backward (MLP input gradient in a Mosaic GPU kernel, weight gradients and the
conv/norm backward in XLA) against `jax.vjp` of the float32 reference in Mosaic GPU's simulator on
CPU (unwritten outputs NaN, race detection on), its lowering for an abstract H100 at convfirst_tiny's
stage shapes, and its pairing with every forward through the registry."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernel_checks import assert_grads_close, normal, random_params, reference_grads, rounded, seed_of
from pallas_kernels import CONVFIRST_BLOCK, UnsupportedError, convfirst_block
from pallas_kernels.common import lower_for_h100, mismatch
from pallas_kernels.convfirst_block import bwd_mosaic, ln_bwd_triton
from pallas_kernels.convfirst_block.bwd_mosaic import MosaicBwdConfig
from pallas_kernels.convfirst_block.reference import conv_norm, layer_norm
from pallas_kernels.problems import BlockProblem

BF16, F16 = jnp.bfloat16, jnp.float16
F32 = jnp.float32


def cf(batch, h, w, c, hidden, **kw) -> BlockProblem:
    return BlockProblem("convfirst_block", batch, h, w, c, hidden, **kw)


def _inputs(prob, dtype):
    seed = seed_of("mosaic_bwd", prob.label(), jnp.dtype(dtype).name, prob.residual)
    params = rounded(random_params(prob, seed), dtype)
    return (normal(seed + 1, prob.x_shape()).astype(dtype), params,
            normal(seed + 2, prob.x_shape()).astype(dtype))


def _races_found() -> bool:
    from jax._src.pallas.mosaic_gpu.interpret import interpret_pallas_call

    return interpret_pallas_call.get_races().races_found


CASES = [  # 35, 70 and 81 pixels: a padded last tile; 2-4 hidden chunks, so the pipeline wraps its slots
    (cf(1, 5, 7, 64, 128, layer_norm=True), None, BF16),
    (cf(2, 5, 7, 64, 256, act="gelu_tanh"), MosaicBwdConfig(64, 1), BF16),
    (cf(1, 9, 9, 128, 256, layer_norm=True, act="relu", residual=False), MosaicBwdConfig(64, 3), F16),
    (cf(2, 4, 4, 64, 192, kernel_size=5, group_width=16, act="none"), MosaicBwdConfig(64, 2), BF16),
    (cf(1, 4, 8, 256, 128, layer_norm=True), MosaicBwdConfig(64, 1), BF16),
    (cf(1, 3, 5, 192, 384, layer_norm=True), None, BF16),  # C not a power of two: the norm by autodiff
]


@pytest.mark.parametrize("prob,config,dtype", CASES, ids=[
    f"{p.label()}{'' if p.residual else '_nores'}_{jnp.dtype(d).name}" for p, _, d in CASES])
def test_mosaic_backward_matches_reference_without_races(prob, config, dtype):
    """The simulator runs wgmma synchronously: it sees thread and TMA hazards on shared memory (a
    missing wait before a and dh are rewritten), not a missing wgmma wait (GPU tests only)."""
    x, params, dy = _inputs(prob, dtype)
    bwd = jax.jit(functools.partial(bwd_mosaic.convfirst_mosaic_mlp_bwd, config=config, **prob.static()))
    assert_grads_close(bwd(x, params, dy), reference_grads(CONVFIRST_BLOCK, prob, x, params, dy), prob, dtype)
    assert not _races_found(), "the simulator found a shared-memory race"


@pytest.mark.parametrize("impl", ["mosaic_mlp", "xla_native", "xla"])
def test_every_forward_trains_with_the_mosaic_backward(impl):
    """jax.grad through the op's custom_vjp: any forward with bwd_impl='mosaic_mlp'."""
    prob = cf(1, 5, 6, 64, 256, layer_norm=True)
    x, params, dy = _inputs(prob, BF16)

    def loss(a, p):
        y = convfirst_block(a, p, impl=impl, bwd_impl="mosaic_mlp", **prob.static())
        return jnp.sum(y.astype(jnp.float32) * dy.astype(jnp.float32))

    got = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, params)
    assert_grads_close(got, reference_grads(CONVFIRST_BLOCK, prob, x, params, dy), prob, BF16)


@pytest.mark.parametrize("s,c", [(56, 64), (28, 128), (14, 256)])
def test_every_candidate_lowers_for_h100(s, c):
    prob = cf(128, s, s, c, 4 * c, layer_norm=True)
    params = jax.eval_shape(prob.make_params, jax.random.key(0))
    x = jax.ShapeDtypeStruct(prob.x_shape(), BF16)
    space = bwd_mosaic.candidates(c, 4 * c)
    assert bwd_mosaic.heuristic(c, 4 * c) in space
    for cfg in space:
        text = lower_for_h100(functools.partial(bwd_mosaic.convfirst_mosaic_mlp_bwd, config=cfg, **prob.static()),
                              x, params, x)
        assert "mosaic_gpu" in text.lower() and "layer_norm_bwd" in text


def test_forced_on_what_it_cannot_run_says_why():
    prob = cf(1, 8, 8, 96, 384)
    x, params, dy = _inputs(prob, BF16)
    with pytest.raises(UnsupportedError, match="multiple of 64"):
        jax.grad(lambda a: convfirst_block(a, params, impl="xla", bwd_impl="mosaic_mlp",
                                           **prob.static()).astype(jnp.float32).sum())(x)
    prob = cf(1, 8, 8, 256, 1024)
    x, params, dy = _inputs(prob, BF16)
    with pytest.raises(UnsupportedError, match="shared memory"):
        bwd_mosaic.convfirst_mosaic_mlp_bwd(x, params, dy, config=MosaicBwdConfig(64, 3), **prob.static())
    with pytest.raises(UnsupportedError, match="block_h=128"):
        bwd_mosaic.convfirst_mosaic_mlp_bwd(x, params, dy, config=MosaicBwdConfig(128, 1), **prob.static())


@pytest.mark.parametrize("shape,dtype", [((1, 5, 7, 64), BF16), ((2, 9, 9, 128), F16), ((3, 256), BF16),
                                         ((600, 16), BF16)], ids=str)
def test_layer_norm_backward_kernel_matches_autodiff(shape, dtype):
    """dz, d scale, d bias and the conv bias's gradient (sum of dz) against jax.vjp of the float32
    LayerNorm, over rows that do not fill the last tile (35, 162 and 3 rows) and several tiles (600)."""
    c = shape[-1]
    seed = seed_of("ln_bwd", shape, jnp.dtype(dtype).name)
    z = (2 * normal(seed, shape) + 0.5).astype(dtype)
    dt = normal(seed + 1, shape).astype(dtype)
    scale, bias = 1 + normal(seed + 2, (c,)), normal(seed + 3, (c,))
    _, vjp = jax.vjp(lambda a, s, b: layer_norm(a, s, b, 1e-6), z.astype(F32), scale, bias)
    dz, d_scale, d_bias = vjp(dt.astype(F32))
    got = jax.jit(functools.partial(ln_bwd_triton.layer_norm_bwd, eps=1e-6))(z, dt, scale)
    assert got[0].dtype == dtype and got[0].shape == shape
    rows = z.size // c
    d_conv_bias = dz.sum(range(dz.ndim - 1))
    for name, g, ref, depth in [("dz", got[0], dz, c), ("d_scale", got[1], d_scale, rows),
                                ("d_bias", got[2], d_bias, rows), ("d_conv_bias", got[3], d_conv_bias, rows)]:
        wrong = mismatch(g, ref, dtype if name == "dz" else F32, depth)
        assert wrong is None, f"{name}: {wrong}"


def test_layer_norm_backward_kernel_refuses_other_widths():
    z = jnp.ones((4, 96), BF16)
    with pytest.raises(ValueError, match="power of two"):
        ln_bwd_triton.layer_norm_bwd(z, z, jnp.ones((96,)), eps=1e-6)


@pytest.mark.parametrize("conv_bias", [True, False])
def test_conv_layer_norm_vjp_matches_autodiff_of_conv_norm(conv_bias):
    """The mosaic_mlp backward's norm step against jax.vjp of the graph it replaces (with and without a
    conv bias, as models build it): the same t, dx and parameter gradients; the conv bias's gradient
    closer to float32 (summed before rounding dz, where autodiff sums the rounded dz)."""
    prob = cf(2, 5, 6, 64, 256, layer_norm=True)
    x, params, _ = _inputs(prob, BF16)
    if not conv_bias:
        params = params._replace(b_conv=None)
    dt = normal(seed_of("ln_vjp", conv_bias), prob.x_shape()).astype(BF16)
    norm = functools.partial(conv_norm, group_width=prob.group_width, precise=False)
    t_ref, vjp_ref = jax.vjp(norm, x, params)
    t, vjp = bwd_mosaic._conv_layer_norm_vjp(x, params, group_width=prob.group_width, ln_eps=1e-6)
    np.testing.assert_array_equal(t, t_ref)
    (dx, grads), (dx_ref, grads_ref) = vjp(dt), vjp_ref(dt)
    assert jax.tree.structure(grads) == jax.tree.structure(grads_ref)
    np.testing.assert_allclose(np.asarray(dx, np.float32), np.asarray(dx_ref, np.float32), rtol=1e-2, atol=1e-2)
    for name in ("w_conv", "ln_scale", "ln_bias"):
        np.testing.assert_allclose(getattr(grads, name), getattr(grads_ref, name), rtol=1e-4, atol=1e-4, err_msg=name)
    if conv_bias:
        exact = jax.vjp(lambda z: layer_norm(z, params.ln_scale, params.ln_bias, 1e-6),
                        jax.vjp(norm, x, params._replace(ln_scale=None))[0].astype(F32))[1](dt.astype(F32))[0]
        assert mismatch(grads.b_conv, exact.sum((0, 1, 2)), F32, 60) is None
