"""One timing protocol for every implementation and model compared.

Protocol (recorded with every result by `Protocol.describe()`):
- compile and warm up first (`warmup` calls, not timed);
- inputs rotate over `rotations` distinct buffers whose total size exceeds 4x the L2 cache, so no
  timed call reads its input from L2 left by the previous one;
- device-side time from CUPTI (`jax.experimental.mosaic.gpu.profiler`): the sum of the kernel
  durations of one call, median over `iterations` calls (launch gaps excluded); also the host
  wall-clock per call (median, `block_until_ready` after each), which adds launch gaps, dispatch and
  the wait for the result, and the pipelined wall-clock per call (`iterations` calls issued back to
  back, one wait at the end), which adds the launch gaps but hides dispatch behind the GPU's work,
  as a serving or training loop does;
- on hosts without CUPTI (CPU) only the wall-clock is available and `method` says so.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger(__name__)

L2_BYTES_DEFAULT = 50 * 2**20  # H100 SXM; only used to size rotations when the device does not say


@dataclass(frozen=True)
class Protocol:
    warmup: int = 5
    iterations: int = 50
    min_rotation_bytes: int = 4 * L2_BYTES_DEFAULT
    max_rotations: int = 8

    def rotations_for(self, bytes_per_input: int) -> int:
        return int(min(self.max_rotations, max(2, math.ceil(self.min_rotation_bytes / max(bytes_per_input, 1)))))

    def describe(self) -> str:
        return (f"warmup={self.warmup},iters={self.iterations},median,"
                f"rotate>={self.min_rotation_bytes >> 20}MiB,cupti-kernel-sum+wallclock+pipelined")


def kernel_time_protocol(description: str) -> str:
    """The part of a `Protocol.describe()` string that defines `median_ms`: the wall-clock figures
    recorded next to it (added over time) do not change it, so times under either compare."""
    return re.sub(r"\+(wallclock|pipelined)", "", description or "")


@dataclass(frozen=True)
class Timing:
    median_ms: float  # device time per call (CUPTI) or wall-clock where CUPTI is unavailable
    p10_ms: float
    p90_ms: float
    wall_median_ms: float  # host wall-clock per call, waiting for each
    pipelined_ms: float  # host wall-clock per call, calls issued back to back
    method: str  # "cupti" or "wallclock"
    iterations: int
    rotations: int
    per_kernel: tuple[tuple[str, float], ...] | None = None  # one call's kernels (name, ms)
    layouts: str = "default"  # of the fixed arguments: "compiler" when time_call placed them (compiler_layouts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def random_like(key, shapes_dtypes: Sequence[jax.ShapeDtypeStruct]):
    """Fresh normal random arrays (never zeros: zeros hide bugs and run faster on tensor cores)."""
    keys = jax.random.split(key, len(shapes_dtypes))
    return [jax.random.normal(k, s.shape, jnp.float32).astype(s.dtype) for k, s in zip(keys, shapes_dtypes)]


def _cupti():
    if jax.default_backend() != "gpu":
        return None
    try:
        from jax.experimental.mosaic.gpu import profiler
    except ImportError:
        return None
    return profiler


def time_call(fn: Callable, make_args: Callable[[int], tuple], *, protocol: Protocol = Protocol(),
              bytes_per_call: int | None = None, compiler_layouts: bool = False) -> Timing:
    """Time `fn(*args)` under the protocol; `make_args(i)` builds the i-th rotated argument tuple.

    One timed iteration runs `fn` once on every rotated argument set (inside one jit), so each call
    reads inputs last touched `rotations - 1` calls earlier; per-call time = iteration time / rotations.
    Arguments that must not rotate (weights) can be the same objects in every set. compiler_layouts:
    those fixed arguments are stored once in the memory layouts the compiled function asks for
    (`Layout.AUTO`), as a deployment would, instead of being converted in every call (e.g. each
    grouped-conv weight into cuDNN's filter layout).
    """
    first = make_args(0)
    if bytes_per_call is None:
        bytes_per_call = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(first) if hasattr(a, "dtype"))
    rotations = protocol.rotations_for(bytes_per_call)
    arg_sets = [first] + [make_args(i) for i in range(1, rotations)]
    run_all = jax.jit(lambda sets: [fn(*args) for args in sets])
    layouts = "default"
    if compiler_layouts:
        try:
            run_all, arg_sets = _in_compiler_layouts(run_all, arg_sets)
            layouts = "compiler"
        except Exception as e:  # e.g. a backend without free parameter layouts: say so, time the default
            log.warning("compiler-chosen layouts for the fixed arguments failed (%s: %s); timing with the "
                        "default layouts", type(e).__name__, str(e)[:200])
    for _ in range(protocol.warmup):
        jax.block_until_ready(run_all(arg_sets))

    walls = []
    for _ in range(protocol.iterations):
        t0 = time.perf_counter()
        jax.block_until_ready(run_all(arg_sets))
        walls.append((time.perf_counter() - t0) * 1e3 / rotations)
    wall = statistics.median(walls)
    t0 = time.perf_counter()
    for _ in range(protocol.iterations):
        out = run_all(arg_sets)
    jax.block_until_ready(out)
    pipelined = (time.perf_counter() - t0) * 1e3 / (protocol.iterations * rotations)

    profiler = _cupti()
    kernels = None
    if profiler is None:
        samples, method = walls, "wallclock"
    else:
        _, per_iter = profiler.measure(run_all, aggregate=False, iterations=protocol.iterations)(arg_sets)
        per_iter = per_iter if protocol.iterations > 1 else [per_iter]
        samples = [sum(ms for _, ms in it) / rotations for it in per_iter]
        n_kernels = len(per_iter[0]) // rotations
        kernels = tuple((str(per_iter[0][k][0]), float(np.median([it[k][1] for it in per_iter])))
                        for k in range(n_kernels))
        method = "cupti"
    q = np.percentile(samples, [10, 50, 90])
    return Timing(float(q[1]), float(q[0]), float(q[2]), wall, pipelined, method, protocol.iterations, rotations,
                  kernels, layouts)


def _in_compiler_layouts(run_all, arg_sets):
    """`run_all` jitted for the leaves shared by every argument set (the fixed arguments) in the
    layouts XLA chose for them when free to (`Layout.AUTO`), and the sets with those leaves placed
    once in those layouts."""
    from jax.experimental.layout import Format, Layout

    flat, treedef = jax.tree.flatten(arg_sets)
    n = len(jax.tree.leaves(arg_sets[0]))
    fixed = [all(flat[k * n + i] is flat[i] for k in range(len(arg_sets))) and isinstance(flat[i], jax.Array)
             for i in range(n)]
    if not any(fixed):
        raise ValueError("no argument is shared by every rotated set: nothing to place")
    auto = jax.tree.unflatten(treedef, [Format(Layout.AUTO) if fixed[i % n] else None for i in range(len(flat))])
    abstract = [jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding) if isinstance(a, jax.Array) else a
                for a in flat]
    compiled = jax.jit(run_all, in_shardings=(auto,)).lower(jax.tree.unflatten(treedef, abstract)).compile()
    chosen = jax.tree.leaves(compiled.input_formats[0][0], is_leaf=lambda v: isinstance(v, Format))
    if any(fixed[i % n] and chosen[i] != chosen[i % n] for i in range(len(flat))):
        raise ValueError("XLA chose different layouts for the same weight in different rotated sets")
    placed = [jax.device_put(flat[i], chosen[i]) if fixed[i] else None for i in range(n)]
    sets = jax.tree.unflatten(treedef, [placed[i % n] if fixed[i % n] else a for i, a in enumerate(flat)])
    return Precompiled(compiled), sets


class Precompiled:
    """A callable that must run as is, e.g. an executable already compiled: CUPTI's `measure` jits any
    callable that is not a `jax.stages.Wrapped`, and this one has that protocol's methods (a jit
    around it would trace it again, or, for a training step with donated state, trace the step)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)

    def trace(self, *_, **__):
        raise NotImplementedError("already compiled")

    lower = trace


def matmul_peak_tmacs(dtype=jnp.bfloat16, n: int = 8192, protocol: Protocol = Protocol(iterations=20)) -> float:
    """Measured dense matmul rate (TMAC/s) on this device, the practical ceiling for efficiency."""
    key = jax.random.key(0)

    def make(i):
        return tuple(random_like(jax.random.fold_in(key, i), [jax.ShapeDtypeStruct((n, n), dtype)] * 2))

    t = time_call(lambda a, b: a @ b, make, protocol=protocol)
    return n ** 3 / (t.median_ms * 1e-3) / 1e12
