"""Every registered block implementation against the reference at real sizes, on an NVIDIA GPU.

    python -m pytest tests/test_kernels_gpu.py -q          # on the H100

The same checks as the CPU interpret-mode tests (tests/kernel_checks.py), at EfficientNet-B0 stage
shapes, ConvFirst stage shapes and a ConvNeXt-like block, batch 16, for every name in
CONVFIRST_BLOCK.names / MBCONV_BLOCK.names, plus the first autotuner candidates of each
implementation (PTX-level failures -- register or SMEM overflow -- only show on the GPU).

Coverage of every output element is proven in interpret mode on CPU, where unwritten outputs read
as NaN. Here it is best effort: a NaN buffer of the output's size is freed just before each kernel
runs, so the allocator tends to hand that memory to the output.
"""
import functools

import jax
import jax.numpy as jnp
import pytest

if jax.default_backend() != "gpu":
    pytest.skip(f"GPU kernel tests need an NVIDIA GPU; jax backend is {jax.default_backend()!r}",
                allow_module_level=True)

from gpu_problems import (CANDIDATE_PROBLEMS, CONVFIRST, EFFICIENTNET_B0, EXPECTED_UNSUPPORTED,  # noqa: E402
                          MOSAIC_GPU_ONLY, N_CANDIDATES, PROBLEMS, cf)
from kernel_checks import assert_close, normal, random_params, rounded, seed_of  # noqa: E402
from pallas_kernels import OPS  # noqa: E402
from pallas_kernels.convfirst_block.reference import compute_conv_weight  # noqa: E402
from pallas_kernels.problems import BlockProblem  # noqa: E402

pytestmark = pytest.mark.gpu


def check_impl(prob, impl, dtype, config=None, widened=False):
    """widened: the conv weight as GPU inference copies hold it (compute_conv_weight), the reference
    on the native one."""
    op = OPS[prob.op]
    seed = seed_of(prob.label(), jnp.dtype(dtype).name)
    params = rounded(random_params(prob, seed), dtype)
    x = normal(seed + 1, prob.x_shape()).astype(dtype)
    ref_params = params
    if widened:
        params = params._replace(w_conv=compute_conv_weight(params.w_conv, prob.group_width, dtype))
    reason = None if impl == "auto" else op.why_unsupported(impl, x, params, "gpu", **prob.static())
    expected = (prob.label(), impl) in EXPECTED_UNSUPPORTED
    if reason is None and expected:
        pytest.fail(f"{impl} now runs {prob.label()}: remove it from EXPECTED_UNSUPPORTED")
    if reason is not None:
        if not expected:
            pytest.fail(f"{impl} should support {prob.label()}: {reason}")
        pytest.skip(f"{impl}: {reason}")  # an expected refusal, listed by -ra
    with jax.default_matmul_precision("highest"):  # an f32 reference, not TF32
        ref = jax.jit(functools.partial(op.reference, **prob.static()))(x.astype(jnp.float32), ref_params)
    ref.block_until_ready()
    fn = jax.jit(functools.partial(op, impl=impl, config=config, **prob.static()))
    out_shape = jax.eval_shape(fn, x, params)
    jnp.full(out_shape.shape, jnp.nan, out_shape.dtype).block_until_ready().delete()  # poison
    assert_close(fn(x, params), ref, dtype, prob.accumulation_depth())


@pytest.mark.parametrize("prob,impl", [(p, name) for p in PROBLEMS for name in OPS[p.op].names],
                         ids=lambda v: v if isinstance(v, str) else v.label())
def test_matches_reference_bf16(prob, impl):
    check_impl(prob, impl, jnp.bfloat16)


@pytest.mark.parametrize("prob,impl", [(p, name) for p in (EFFICIENTNET_B0[1], CONVFIRST[1])
                                       for name in OPS[p.op].names],
                         ids=lambda v: v if isinstance(v, str) else v.label())
def test_matches_reference_fp16(prob, impl):
    check_impl(prob, impl, jnp.float16)




@pytest.mark.parametrize("prob,impl", [(p, name) for p in CONVFIRST[:4] for name in OPS[p.op].names],
                         ids=lambda v: v if isinstance(v, str) else v.label())
def test_widened_conv_weight_matches_reference(prob, impl):
    """The group-width-8 conv weight widened to 16 (GPU inference copies) on every implementation."""
    check_impl(prob, impl, jnp.bfloat16, widened=True)


@pytest.mark.parametrize("prob,impl,index", [
    (p, name, i) for p in CANDIDATE_PROBLEMS for name, impl in OPS[p.op].implementations.items()
    if impl.candidates is not None for i in range(1, N_CANDIDATES + 1)],
    ids=lambda v: str(v) if not isinstance(v, BlockProblem) else v.label())
def test_autotuner_candidates_compile_and_match(prob, impl, index):
    """The heuristic (index 0) runs above; these are the next configs the autotuner would time."""
    params = random_params(prob, 0)
    candidates = OPS[prob.op].implementations[impl].candidates(prob, params)
    assert len(candidates) > index, f"{impl} has only {len(candidates)} candidates for {prob.label()}"
    check_impl(prob, impl, jnp.bfloat16, candidates[index])


# The backward kernels at convfirst_tiny_ln stage shapes (and one without LayerNorm, fp16 ones).
BACKWARD = [(cf(56, 64, layer_norm=True), jnp.bfloat16), (cf(28, 128, layer_norm=True), jnp.bfloat16),
            (cf(14, 256, layer_norm=True), jnp.bfloat16), (cf(56, 64), jnp.bfloat16),
            (cf(28, 128, layer_norm=True, act="gelu"), jnp.float16),
            (cf(28, 128, layer_norm=True, act="gelu_tanh"), jnp.float16)]


def _backward_inputs(prob, dtype):
    seed = seed_of("bwd", prob.label(), jnp.dtype(dtype).name)
    params = rounded(random_params(prob, seed), dtype)
    x = normal(seed + 1, prob.x_shape()).astype(dtype)
    dy = normal(seed + 2, prob.x_shape()).astype(dtype)
    return x, params, dy


def _backward(prob, name="pallas_fused", config=None):
    return jax.jit(functools.partial(OPS[prob.op].backwards[name].fn, config=config, **prob.static()))


# every registered backward kernel at every case it supports (mosaic_mlp: no erf GELU)
BACKWARD_IMPLS = [(p, d, name) for p, d in BACKWARD for name in ("pallas_fused", "mosaic_mlp")
                  if not (name == "mosaic_mlp" and p.act == "gelu")]


@pytest.mark.parametrize("prob,dtype,name", BACKWARD_IMPLS, ids=lambda v: v.label() if isinstance(v, BlockProblem)
                         else v if isinstance(v, str) else jnp.dtype(v).name)
def test_backward_kernels_match_reference(prob, dtype, name):
    from kernel_checks import assert_grads_close, reference_grads

    x, params, dy = _backward_inputs(prob, dtype)
    ref = jax.block_until_ready(reference_grads(OPS[prob.op], prob, x, params, dy))
    bwd = _backward(prob, name)
    out = jax.eval_shape(bwd, x, params, dy)
    poison = [jnp.full(o.shape, jnp.nan, o.dtype) for o in jax.tree.leaves(out)]
    for p in jax.block_until_ready(poison):
        p.delete()
    assert_grads_close(bwd(x, params, dy), ref, prob, dtype)


@pytest.mark.parametrize("prob", [p for p, _ in BACKWARD[:3]], ids=BlockProblem.label)
def test_mosaic_backward_configs_match_reference(prob):
    """Every config of mosaic_mlp's backward space (the run ZJ sweep timed them) at each stage shape."""
    from kernel_checks import assert_grads_close, reference_grads

    x, params, dy = _backward_inputs(prob, jnp.bfloat16)
    ref = reference_grads(OPS[prob.op], prob, x, params, dy)
    space = OPS[prob.op].backwards["mosaic_mlp"].candidates(prob, params)
    assert space
    for config in space:
        assert_grads_close(_backward(prob, "mosaic_mlp", config)(x, params, dy), ref, prob, jnp.bfloat16)


@pytest.mark.parametrize("name", ["pallas_fused", "mosaic_mlp"])
def test_backward_kernels_are_deterministic(name):
    """Partial sums are added in a fixed order (pallas_fused), the MLP's weight gradients are cuBLAS
    GEMMs over the kernel's a and dh, the LayerNorm's from per-tile partial sums (mosaic_mlp): two
    runs give bit-identical gradients. For mosaic_mlp only the MLP's and the norm's gradients are
    compared: dx and the conv weights' come from cuDNN, whose algorithm XLA's autotuner picks."""
    prob = BACKWARD[1][0]
    x, params, dy = _backward_inputs(prob, jnp.bfloat16)
    bwd = _backward(prob, name)
    first, second = bwd(x, params, dy), bwd(x, params, dy)
    if name == "mosaic_mlp":
        mlp = ("w_expand", "b_expand", "w_project", "b_project", "b_conv", "ln_scale", "ln_bias")
        first, second = ([getattr(g[1], f) for f in mlp] for g in (first, second))
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        assert bool(jnp.array_equal(a, b))


@pytest.mark.parametrize("prob,config", MOSAIC_GPU_ONLY, ids=[f"{p.label()}-{i}" for i, (p, _) in
                                                             enumerate(MOSAIC_GPU_ONLY)])
def test_mosaic_mlp_gpu_only_variants_match_reference(prob, config):
    check_impl(prob, "mosaic_mlp", jnp.bfloat16, config)


TUNED_MODELS = ("convfirst_tiny", "convfirst_tiny_ln", "convfirst_small")


def _tuned_problems():
    from convfirst.benchmark import block_problems
    from convfirst.models import model_spec

    probs = {p for m in TUNED_MODELS for p, _ in block_problems(model_spec(m), 128)}
    return sorted(probs, key=BlockProblem.label)


@pytest.mark.parametrize("prob", _tuned_problems(), ids=BlockProblem.label)
def test_auto_with_this_gpus_tuning_cache_matches_reference(prob):
    """'auto' at batch 128 runs what the tuning cache chose for this GPU, with the cached tile
    config: every shipped (impl, config) pair is checked at the shape it was tuned for."""
    from pallas_kernels import autotune

    params = random_params(prob, 0)
    x = normal(1, prob.x_shape()).astype(jnp.bfloat16)
    chosen = OPS[prob.op].select("auto", x, params, **prob.static()).name
    config = autotune.cached_config(prob.op, chosen, x, params, prob.static())
    print(f"{prob.label()}: auto -> {chosen} {config or ''}")
    check_impl(prob, "auto", jnp.bfloat16)
