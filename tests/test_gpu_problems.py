"""On CPU, before any GPU run: the GPU kernel tests' expectations hold for the registered
implementations -- exactly the listed (problem, impl) pairs are refused by the shape checks, and every
implementation with a config space has the candidates those tests compile."""
import jax
import jax.numpy as jnp
import pytest

from gpu_problems import CANDIDATE_PROBLEMS, EXPECTED_UNSUPPORTED, MOSAIC_GPU_ONLY, N_CANDIDATES, PROBLEMS
from kernel_checks import random_params
from pallas_kernels import OPS


def test_exactly_the_expected_refusals():
    refused = set()
    for prob in PROBLEMS:
        op = OPS[prob.op]
        x = jax.ShapeDtypeStruct(prob.x_shape(), jnp.bfloat16)
        params = random_params(prob, 0)
        for name in op.names:
            if op.why_unsupported(name, x, params, "gpu", **prob.static()) is not None:
                refused.add((prob.label(), name))
    assert refused == EXPECTED_UNSUPPORTED


@pytest.mark.parametrize("prob", CANDIDATE_PROBLEMS, ids=lambda p: p.label())
def test_every_config_space_has_the_candidates_the_gpu_tests_compile(prob):
    params = random_params(prob, 0)
    for name, impl in OPS[prob.op].implementations.items():
        if impl.candidates is not None:
            assert len(impl.candidates(prob, params)) > N_CANDIDATES, name


@pytest.mark.parametrize("prob,config", MOSAIC_GPU_ONLY, ids=lambda v: v.label() if hasattr(v, "label") else "")
def test_mosaic_gpu_only_variants_lower_for_h100(prob, config):
    """The GPU-only mosaic_mlp configs the GPU tests run are valid there and compile for an H100."""
    import functools

    from pallas_kernels.common import lower_for_h100
    from pallas_kernels.convfirst_block import mlp_mosaic

    params = jax.eval_shape(prob.make_params, jax.random.key(0))
    x = jax.ShapeDtypeStruct(prob.x_shape(), jnp.bfloat16)
    text = lower_for_h100(functools.partial(mlp_mosaic.convfirst_mosaic_mlp, config=config, **prob.static()),
                          x, params)
    assert "mosaic_gpu" in text.lower()
