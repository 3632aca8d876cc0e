"""The 'mosaic_mlp' ConvFirst implementation (XLA grouped conv + a Mosaic GPU kernel for the MLP)
against the reference in Mosaic GPU's simulator on CPU (race detection on, fresh shared memory and
unwritten outputs NaN), its lowering for an abstract H100 at convfirst_tiny's stage shapes, and its
refusals."""
import functools

import jax
import jax.numpy as jnp
import pytest

from kernel_checks import assert_close, normal, random_params, rounded, seed_of
from pallas_kernels import UnsupportedError, convfirst_block
from pallas_kernels.common import compiling_for_gpu, lower_for_h100
from pallas_kernels.convfirst_block import mlp_mosaic
from pallas_kernels.convfirst_block.mlp_mosaic import MosaicMLPConfig
from pallas_kernels.problems import BlockProblem

BF16, F16 = jnp.bfloat16, jnp.float16


def cf(batch, h, w, c, hidden, **kw) -> BlockProblem:
    return BlockProblem("convfirst_block", batch, h, w, c, hidden, **kw)


def _inputs(prob, dtype):
    seed = seed_of("mosaic", prob.label(), jnp.dtype(dtype).name, prob.residual)
    return normal(seed + 1, prob.x_shape()).astype(dtype), rounded(random_params(prob, seed), dtype)


def _races_found() -> bool:
    from jax._src.pallas.mosaic_gpu.interpret import interpret_pallas_call

    return interpret_pallas_call.get_races().races_found


CASES = [  # 70 and 98 pixels: the last 64-row tile is padded; two pipeline steps or more everywhere
    (cf(2, 5, 7, 64, 128), None, BF16),
    (cf(1, 8, 8, 128, 256, layer_norm=True, act="gelu_tanh"), None, BF16),
    (cf(2, 7, 7, 64, 256, kernel_size=5, group_width=16, act="relu", residual=False), MosaicMLPConfig(64, 128, 3), F16),
    (cf(1, 4, 16, 256, 128, act="none"), MosaicMLPConfig(64, 64, 1), BF16),
    (cf(2, 5, 7, 128, 256), MosaicMLPConfig(64, 64, 2, x_buffer=False), BF16),
    (cf(1, 6, 6, 64, 128, residual=False), MosaicMLPConfig(64, 128, 1, x_buffer=False), BF16),
    # two compute warpgroups fed by a producer warpgroup (128 rows per program; 162 and 81 pixels)
    (cf(2, 9, 9, 64, 256, layer_norm=True), MosaicMLPConfig(64, 64, 2, warpgroups=2), BF16),
    (cf(1, 9, 9, 128, 384, act="gelu_tanh"), MosaicMLPConfig(64, 128, 2, x_buffer=False, warpgroups=2), F16),
    # clusters of two programs sharing each weight chunk by TMA multicast (256 and 128 rows per
    # cluster: 162 pixels pad to 256, one program all padding), and delayed release (here only the
    # slot bookkeeping: the simulator runs wgmma synchronously, so a missing wait shows on the GPU only,
    # tests/test_kernels_gpu.py)
    (cf(2, 9, 9, 64, 256), MosaicMLPConfig(64, 64, 2, warpgroups=2, cluster=2), BF16),
    (cf(1, 9, 9, 128, 256, layer_norm=True), MosaicMLPConfig(64, 64, 3, x_buffer=False, cluster=2), BF16),
    (cf(2, 5, 7, 64, 192), MosaicMLPConfig(64, 64, 2, delay_release=1), F16),
    (cf(1, 9, 9, 64, 256, act="relu"), MosaicMLPConfig(64, 64, 3, warpgroups=2, cluster=2, delay_release=1), BF16),
    # the ping-pong schedule: the two compute warpgroups take turns through a schedule barrier (a
    # miscounted arrival deadlocks the simulator)
    (cf(2, 9, 9, 64, 256), MosaicMLPConfig(64, 64, 2, warpgroups=2, pingpong=True), BF16),
    (cf(1, 9, 9, 128, 256, layer_norm=True), MosaicMLPConfig(64, 64, 3, x_buffer=False, warpgroups=2, cluster=2,
                                                             delay_release=1, pingpong=True), F16),
]


@pytest.mark.parametrize("prob,config,dtype", CASES, ids=[
    f"{p.label()}{'' if p.residual else '_nores'}_{jnp.dtype(d).name}" for p, _, d in CASES])
def test_mosaic_mlp_matches_reference_without_races(prob, config, dtype):
    x, params = _inputs(prob, dtype)
    y = convfirst_block(x, params, impl="mosaic_mlp", config=config, **prob.static())
    with jax.default_matmul_precision("highest"):
        ref = convfirst_block(x.astype(jnp.float32), params, impl="xla", **prob.static())
    assert_close(y, ref, dtype, prob.hidden)
    assert not _races_found(), "the simulator found a shared-memory race"


@pytest.mark.parametrize("s,c,e", [(56, 64, 4), (28, 128, 4), (14, 256, 4), (14, 128, 3)])
def test_every_candidate_lowers_for_h100(s, c, e):
    """convfirst_tiny's stage shapes and an expansion of 3 (where a flat shared-memory estimate once
    let through configs 56 bytes over the limit)."""
    prob = cf(128, s, s, c, e * c)
    params = jax.eval_shape(prob.make_params, jax.random.key(0))
    x = jax.ShapeDtypeStruct(prob.x_shape(), BF16)
    with compiling_for_gpu():  # the GPU's space: the project GEMM fed from registers
        space = mlp_mosaic.candidates(c, e * c)
        assert space[0] == mlp_mosaic.heuristic(c, e * c)
    assert space and all(cfg.h_regs for cfg in space)
    for cfg in space:
        text = lower_for_h100(functools.partial(mlp_mosaic.convfirst_mosaic_mlp, config=cfg, **prob.static()),
                              x, params)
        assert "mosaic_gpu" in text.lower()


@pytest.mark.parametrize("prob,reason", [
    (cf(1, 8, 8, 96, 384), "multiple of 64"),
    (cf(1, 8, 8, 512, 2048), "<= 256"),
    (cf(1, 8, 8, 64, 96), "hidden width 96"),
    (cf(1, 8, 8, 64, 256, act="gelu"), "activation 'gelu'"),
    (cf(1, 8, 8, 256, 7168), "default tiles need 236544 bytes"),  # the f32 bias buffer outgrows it
])
def test_forced_on_unsupported_shapes_says_why(prob, reason):
    x, params = _inputs(prob, BF16)
    with pytest.raises(UnsupportedError, match=reason):
        convfirst_block(x, params, impl="mosaic_mlp", **prob.static())


def test_float32_input_and_bad_configs_are_refused():
    prob = cf(1, 8, 8, 64, 256)
    x, params = _inputs(prob, BF16)
    with pytest.raises(UnsupportedError, match="float32"):
        convfirst_block(x.astype(jnp.float32), params, impl="mosaic_mlp", **prob.static())
    with pytest.raises(UnsupportedError, match="producer warpgroup"):
        convfirst_block(x, params, impl="mosaic_mlp", config=MosaicMLPConfig(64, 64, 1, warpgroups=2),
                        **prob.static())
    with pytest.raises(UnsupportedError, match="block_h=96"):
        convfirst_block(x, params, impl="mosaic_mlp", config=MosaicMLPConfig(64, 96), **prob.static())
    with pytest.raises(UnsupportedError, match="cluster=3"):
        convfirst_block(x, params, impl="mosaic_mlp", config=MosaicMLPConfig(64, 64, 2, cluster=3), **prob.static())
    for bad in (MosaicMLPConfig(64, 64, 1, delay_release=1), MosaicMLPConfig(64, 64, 1, cluster=2),
                # ping-pong with delayed release on two slots deadlocks (a helper reproduced it in the simulator)
                MosaicMLPConfig(64, 64, 2, warpgroups=2, delay_release=1, pingpong=True)):
        with pytest.raises(UnsupportedError, match="too small"):
            convfirst_block(x, params, impl="mosaic_mlp", config=bad, **prob.static())
    with pytest.raises(UnsupportedError, match="alternates two compute warpgroups"):
        convfirst_block(x, params, impl="mosaic_mlp", config=MosaicMLPConfig(64, 64, 2, pingpong=True),
                        **prob.static())
    with pytest.raises(UnsupportedError, match="delay_release=2"):
        convfirst_block(x, params, impl="mosaic_mlp", config=MosaicMLPConfig(64, 64, 3, delay_release=2),
                        **prob.static())
    big = cf(1, 8, 8, 256, 1024)
    xb, pb = _inputs(big, BF16)
    with pytest.raises(UnsupportedError, match="shared memory"):
        convfirst_block(xb, pb, impl="mosaic_mlp", config=MosaicMLPConfig(64, 256, 4), **big.static())


def test_register_operand_is_gpu_only():
    """Mosaic's simulator takes shared-memory wgmma operands only: off the GPU h_regs is refused when
    forced and left out of the heuristic and the candidates, which keep it on the GPU."""
    prob = cf(1, 8, 8, 64, 256)
    x, params = _inputs(prob, BF16)
    with pytest.raises(UnsupportedError, match="h_regs"):
        convfirst_block(x, params, impl="mosaic_mlp", config=MosaicMLPConfig(h_regs=True), **prob.static())
    assert not mlp_mosaic.heuristic(64, 256).h_regs
    assert not any(cfg.h_regs for cfg in mlp_mosaic.candidates(64, 256))
    with compiling_for_gpu():
        assert mlp_mosaic.heuristic(64, 256).h_regs


def test_auto_order_without_a_cache_entry_prefers_measured_winners():
    """On a GPU without a tuning-cache entry: mosaic_mlp, the Triton fused kernel up to C=128,
    xla_native, xla; the backward mosaic_mlp, then autodiff in the compute dtype. A ConvNeXt-like C=96 block
    skips both kernels with their reasons."""
    from pallas_kernels import AUTO, CONVFIRST_BLOCK

    for c, want in ((64, ("mosaic_mlp", "pallas_fused", "xla_native", "xla")),
                    (256, ("mosaic_mlp", "xla_native", "xla"))):
        prob = cf(1, 8, 8, c, 4 * c)
        x = jax.ShapeDtypeStruct(prob.x_shape(), BF16)
        params = random_params(prob, 0)
        assert CONVFIRST_BLOCK.candidates(AUTO, x, params, "gpu", prob.static()) == (want, True)
        assert CONVFIRST_BLOCK.candidates(AUTO, x, params, "gpu", prob.static(), bwd=True) == (
            ("mosaic_mlp", "xla_native", "xla"), True)
    convnext = cf(1, 8, 8, 96, 384, kernel_size=7, group_width=1, act="gelu", layer_norm=True)
    x = jax.ShapeDtypeStruct(convnext.x_shape(), BF16)
    params = random_params(convnext, 0)
    assert "multiple of 64" in CONVFIRST_BLOCK.why_unsupported("mosaic_mlp", x, params, "gpu", **convnext.static())
    assert "power of two" in CONVFIRST_BLOCK.why_unsupported("pallas_fused", x, params, "gpu", **convnext.static())


def _per_pixel_reductions(impl):
    """Reductions over channels in the compiled gradient program (the LayerNorm statistics and their
    backward): forward and autodiff backward share the statistics only if XLA merged the two graphs."""
    prob = cf(1, 6, 6, 64, 256, layer_norm=True)
    x, params = _inputs(prob, BF16)

    def loss(x, params):
        return convfirst_block(x, params, impl=impl, bwd_impl="xla_native", **prob.static()).astype(jnp.float32).sum()

    hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, params).compile().as_text()
    return sum(" reduce(" in line and "f32[1,6,6]" in line for line in hlo.splitlines())


def test_xla_native_backward_reuses_the_forward_norm():
    """mosaic_mlp computes t = norm(conv(x)) with the reference's own graph, so the recomputing
    backward adds no second conv or norm: as many channel reductions as plain autodiff."""
    plain = _per_pixel_reductions("xla_native")
    assert plain >= 4  # two forward statistics and the norm's backward sums
    assert _per_pixel_reductions("mosaic_mlp") == plain
