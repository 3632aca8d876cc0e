"""The timing protocol's argument handling (pallas_kernels.timing), on CPU (wall-clock timing)."""
import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels.timing import Precompiled, Protocol, _in_compiler_layouts, time_call


def test_compiler_layouts_place_the_fixed_arguments_once_and_rotate_the_rest():
    """With compiler_layouts the weights shared by every rotated argument set are placed once, in
    the layouts the compiled function asked for, and the same executable runs every set; the rotated
    inputs stay as they were and the results do not change."""
    w = jax.random.normal(jax.random.key(0), (64, 32), jnp.float32)
    xs = [jax.random.normal(jax.random.key(1 + i), (16, 64), jnp.float32) for i in range(3)]
    run_all = jax.jit(lambda sets: [x @ w for w, x in sets])
    fn, sets = _in_compiler_layouts(run_all, [(w, x) for x in xs])
    assert isinstance(fn, Precompiled)
    assert all(s[0] is sets[0][0] for s in sets) and sets[0][0].format is not None  # one placed copy
    assert all(s[1] is x for s, x in zip(sets, xs))  # rotated inputs untouched
    for got, x in zip(fn(sets), xs):
        np.testing.assert_allclose(got, x @ w, rtol=1e-6)
    fn, sets = _in_compiler_layouts(jax.jit(lambda sets: [x @ w * s for x, w, s in sets]),
                                    [(x, w, np.float32(2.0)) for x in xs])  # a fixed leaf after a rotated one,
    assert all(s[1] is sets[0][1] for s in sets)                            # and a non-array leaf
    np.testing.assert_allclose(fn(sets)[2], 2 * xs[2] @ w, rtol=1e-6)
    t = time_call(lambda w, x: x @ w, lambda i: (w, xs[i % 3]), compiler_layouts=True,
                  protocol=Protocol(warmup=1, iterations=2, min_rotation_bytes=1))
    assert t.rotations == 2 and t.median_ms > 0 and t.method == "wallclock" and t.layouts == "compiler"


def test_compiler_layouts_fall_back_visibly(monkeypatch, caplog):
    """Where the backend cannot free the layouts, the call is timed with the default ones, with a
    warning and the Timing saying so (the benchmark row's protocol then omits 'compiler-layouts')."""
    from pallas_kernels import timing

    def fail(*_):
        raise RuntimeError("no free layouts here")

    monkeypatch.setattr(timing, "_in_compiler_layouts", fail)
    w = jnp.ones((8, 8))
    with caplog.at_level("WARNING"):
        t = time_call(lambda w, x: x @ w, lambda i: (w, jnp.full((8, 8), float(i))), compiler_layouts=True,
                      protocol=Protocol(warmup=1, iterations=2, min_rotation_bytes=1))
    assert t.layouts == "default" and "no free layouts here" in caplog.text
