"""Shared checks for the kernel tests (CPU interpret mode and GPU): fresh random data, rounding to
the kernel dtype, and the error assertion."""
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels.common import rel_tolerance, relative_l2


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


def assert_close(y, ref, dtype, depth: int):
    """y (kernel output in `dtype`) against a float32 reference: fully written (finite), relative L2
    error within the dtype/depth tolerance, and no single element far off (a wrong border pixel
    hides in an L2 norm)."""
    y = np.asarray(jnp.asarray(y).astype(jnp.float32))
    ref = np.asarray(ref, np.float32)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert np.isfinite(y).all(), f"{(~np.isfinite(y)).sum()} of {y.size} outputs unwritten or non-finite"
    err, tol = relative_l2(y, ref), rel_tolerance(dtype, depth)
    assert err < tol, f"relative L2 error {err:.2e} >= {tol:.2e}"
    worst = np.abs(y - ref).max() / np.sqrt(np.mean(np.square(ref)))
    assert worst < 8 * tol, f"max error {worst:.2e} x rms(ref) >= {8 * tol:.2e}"
