"""Shared checks for the kernel tests (CPU interpret mode and GPU): fresh random data, rounding to
the kernel dtype, and the error assertion."""
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels.common import mismatch


def seed_of(*parts) -> int:
    """A reproducible seed per test case (str hashes are salted per process)."""
    return zlib.crc32(repr(parts).encode())


def normal(seed: int, shape, fan_in: int = 1):
    """Fresh N(0, 1/fan_in) data, never zeros (numpy: jax.random compiles per shape, ~1-2 s each on
    a loaded CPU)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32) / np.sqrt(fan_in))


def random_params(prob, seed: int):
    """Parameters of a BlockProblem: its tree and scaling (fan-in scaled weights, 0.1-scaled biases,
    LayerNorm scale around 1) drawn with numpy."""
    rng = np.random.default_rng(seed)

    def draw(s):
        v = rng.standard_normal(s.shape, np.float32)
        return jnp.asarray(v / np.sqrt(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 0.1 * v)

    params = jax.tree.map(draw, jax.eval_shape(prob.make_params, jax.random.key(0)))
    if getattr(params, "ln_scale", None) is not None:
        params = params._replace(ln_scale=1.0 + params.ln_scale)
    return params


def rounded(tree, dtype):
    """Round every array leaf to `dtype` and back to float32: exactly what the kernels see."""
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a).astype(dtype).astype(np.float32)), tree)


def assert_close(y, ref, dtype, depth: int, scale: float = 1.0):
    """y (kernel output in `dtype`) against a float32 reference by `pallas_kernels.common.mismatch`:
    fully written (finite), relative L2 error within the dtype/depth tolerance (times `scale`), and
    no single element far off (a wrong border pixel hides in an L2 norm)."""
    assert (wrong := mismatch(y, ref, dtype, depth, scale)) is None, wrong


def reference_grads(op, prob, x, params, dy):
    """(dx, d params) of the op's reference in float32 on the same rounded inputs."""
    with jax.default_matmul_precision("highest"):
        _, vjp = jax.vjp(lambda a, p: op.reference(a, p, **prob.static()), x.astype(jnp.float32), params)
        return vjp(dy.astype(jnp.float32))


def assert_grads_close(got, ref, prob, dtype, scale: float = 1.0):
    """Every gradient of a block backward against the reference's: dx in `dtype`, parameter
    gradients in the parameters' dtypes, None where the reference has none. relu' is a step:
    rounding the normalized input to bf16 flips near-zero pre-activations (as in XLA's own bf16
    backward), so relu gets twice the tolerance (times `scale`)."""
    scale *= 2.0 if prob.act == "relu" else 1.0
    (got_dx, got_p), (ref_dx, ref_p) = got, ref
    assert got_dx.dtype == dtype
    assert_close(got_dx, ref_dx, dtype, prob.hidden, scale)
    for name in ref_p._fields:
        r, g = getattr(ref_p, name), getattr(got_p, name)
        if r is None:
            assert g is None, name
            continue
        assert g.dtype == r.dtype and g.shape == r.shape, name
        assert_close(g, r, dtype, prob.hidden, scale)
