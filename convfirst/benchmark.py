"""Inference benchmark of whole models and of their residual blocks, one row per (model|block, impl).

Every figure goes through `pallas_kernels.timing` (one protocol for all implementations) on
synthetic device-resident inputs (fresh normal noise: the benchmark times compute, not the input
pipeline), and every row carries device, dtype, batch, layout, impl, protocol, jax version and commit.
Columns follow timm's benchmark.py (`infer_samples_per_sec`, `infer_step_time`, `param_count` in
millions, `infer_gmacs` per image) plus efficiency columns (MACs / (time x peak)).
"""
from __future__ import annotations

import collections
import functools
import os
import platform
import subprocess

import jax
import jax.numpy as jnp

from convfirst.cost.hardware import device_from_jax, get_dtype
from convfirst.cost.layers import layer_costs, model_params
from convfirst.models import create_model, model_spec
from convfirst.models.specs import ConvFirstBlock, MBConvBlock, ModelSpec
from pallas_kernels import AUTO, OPS
from pallas_kernels.problems import BlockProblem
from pallas_kernels.timing import Protocol, Timing, time_call

COLUMNS = (
    "kind", "model", "block", "block_count", "impl", "infer_img_size", "infer_batch_size", "dtype", "layout",
    "infer_samples_per_sec", "infer_step_time", "infer_wall_time", "infer_pipelined_time", "param_count",
    "infer_gmacs", "infer_macts",
    "achieved_tmacs", "peak_tmacs_datasheet", "eff_datasheet", "peak_tmacs_matmul", "eff_matmul",
    "device", "timing_method", "protocol", "rotations", "jax_version", "commit", "status",
)


COMPUTE_DTYPES = {"bf16": jnp.bfloat16, "fp16": jnp.float16}


def compute_dtype(name: str):
    """The activation dtype the kernels run in for a precision name of the hardware table."""
    get_dtype(name)  # unknown names: error listing the valid ones
    try:
        return COMPUTE_DTYPES[name]
    except KeyError:
        raise ValueError(f"benchmarks run in {', '.join(COMPUTE_DTYPES)}; got {name!r}") from None


def git_commit() -> str:
    """The working tree's commit; CONVFIRST_COMMIT overrides it (the GPU machine's copy has no
    usable git history)."""
    if os.environ.get("CONVFIRST_COMMIT"):
        return os.environ["CONVFIRST_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def block_problem(lc, batch: int) -> BlockProblem | None:
    """The block-op call of one layer (a `LayerCost`) at `batch`; None for layers that are not blocks."""
    s, (h, w, c) = lc.spec, lc.in_shape
    if isinstance(s, ConvFirstBlock):
        return BlockProblem("convfirst_block", batch, h, w, c, s.hidden, s.kernel_size, s.group_width, s.act,
                            layer_norm=s.norm == "layer")
    if isinstance(s, MBConvBlock):
        return BlockProblem("mbconv_block", batch, h, w, c, s.hidden, s.kernel_size, s.group_width, s.act,
                            cout=s.cout, stride=s.stride, expand=s.has_expand, se_channels=s.se_channels,
                            residual=s.has_residual)
    return None


def block_problems(spec: ModelSpec, batch: int) -> list[tuple[BlockProblem, int]]:
    """The distinct residual-block calls of a model with how often each occurs."""
    counts = collections.Counter(p for lc in layer_costs(spec) if (p := block_problem(lc, batch)) is not None)
    return list(counts.items())


@functools.cache
def environment(dtype: str) -> dict:
    dev = jax.devices()[0]
    row = {"device": dev.device_kind, "jax_version": jax.__version__, "commit": git_commit(),
           "host": platform.node(), "layout": "NHWC", "dtype": dtype}
    try:
        row["peak_tmacs_datasheet"] = device_from_jax(dev).peak_macs(dtype) / 1e12
    except ValueError:
        row["peak_tmacs_datasheet"] = None
    return row


def _efficiency(row: dict, macs_per_call: float, t: Timing, peak_matmul: float | None) -> dict:
    achieved = macs_per_call / (t.median_ms * 1e-3) / 1e12
    peak = row.get("peak_tmacs_datasheet")
    row.update(infer_step_time=t.median_ms, infer_wall_time=t.wall_median_ms, infer_pipelined_time=t.pipelined_ms,
               achieved_tmacs=achieved,
               eff_datasheet=achieved / peak if peak else None, peak_tmacs_matmul=peak_matmul,
               eff_matmul=achieved / peak_matmul if peak_matmul else None, timing_method=t.method,
               rotations=t.rotations,
               infer_samples_per_sec=row["infer_batch_size"] * 1e3 / t.median_ms)
    return row


def bench_model(name: str, impl, *, batch: int, dtype: str = "bf16", protocol: Protocol = Protocol(),
                peak_matmul: float | None = None, resolution: int | None = None, fold_ahead: bool = False) -> dict:
    """One model's forward pass (eval mode, BN folded in the block ops) at `batch`. fold_ahead: the
    inference parameters are prepared once (ConvNet.for_inference) and stored in the layouts the
    compiled forward asks for (time_call's compiler_layouts), not converted in every forward; the
    row's protocol then says 'weights-folded-ahead,compiler-layouts'."""
    from flax import nnx

    dt = compute_dtype(dtype)
    spec = model_spec(name, **({"resolution": resolution} if resolution else {}))
    model = create_model(name, dtype=dt, impl=impl, **({"resolution": resolution} if resolution else {}))
    model.eval()
    if fold_ahead:
        model = model.for_inference()
    graphdef, state = nnx.split(model)
    state = nnx.to_pure_dict(state)  # arrays, not Variable objects: no per-call Python work on ~300 leaves
    r = spec.resolution
    costs = layer_costs(spec)
    macs = sum(lc.macs for lc in costs)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    def make(i):
        return state, jax.random.normal(jax.random.key(i), (batch, r, r, spec.in_chans), jnp.float32).astype(dt)

    t = time_call(forward, make, protocol=protocol, compiler_layouts=fold_ahead)
    row = dict(environment(dtype), kind="model", model=name, block="", block_count=1,
               impl=impl if isinstance(impl, str) else ",".join(f"{k}={v}" for k, v in sorted(impl.items())),
               infer_img_size=r, infer_batch_size=batch, param_count=model_params(spec) / 1e6,
               infer_gmacs=macs / 1e9, infer_macts=sum(lc.out_elements for lc in costs) / 1e6,
               protocol=protocol.describe() + (",weights-folded-ahead" if fold_ahead else "")
               + (",compiler-layouts" if t.layouts == "compiler" else ""), status="ok")
    row = _efficiency(row, macs * batch, t, peak_matmul)
    row["per_kernel"] = t.per_kernel
    return row


def bench_block(problem: BlockProblem, impl: str, *, dtype: str = "bf16", protocol: Protocol = Protocol(),
                peak_matmul: float | None = None, model: str = "", count: int = 1) -> dict:
    """One residual-block op call at the problem's batch, forced to `impl`."""
    dt = compute_dtype(dtype)
    op = OPS[problem.op]
    params = problem.make_params(jax.random.key(1))
    static = problem.static()
    row = dict(environment(dtype), kind="block", model=model, block=problem.label(), block_count=count, impl=impl,
               infer_img_size=problem.h, infer_batch_size=problem.batch, param_count=None,
               infer_gmacs=problem.macs() / problem.batch / 1e9, infer_macts=None,
               protocol=protocol.describe())
    x0 = problem.make_x(jax.random.key(0), dt)
    if impl == AUTO:  # the row records what 'auto' chose for this shape (tuning cache or heuristic)
        row["resolved_impl"] = op.select(AUTO, x0, params, **static).name
    elif impl not in op.names:  # e.g. mosaic_mlp, a ConvFirst-only implementation, on an MBConv block
        return dict(row, status=f"unsupported: {problem.op} has no implementation {impl!r}")
    elif reason := op.why_unsupported(impl, x0, params, jax.default_backend(), **static):
        return dict(row, status=f"unsupported: {reason}")
    t = time_call(lambda x: op(x, params, impl=impl, **static),
                  lambda i: (problem.make_x(jax.random.key(10 + i), dt),), protocol=protocol)
    return dict(_efficiency(row, problem.macs(), t, peak_matmul), status="ok", per_kernel=t.per_kernel)


def bench_block_train(problem: BlockProblem, impl: str, bwd_impl: str, *, dtype: str = "bf16",
                      protocol: Protocol = Protocol(), peak_matmul: float | None = None, model: str = "",
                      count: int = 1) -> dict:
    """One residual block's forward + backward (`jax.vjp` on x and all parameters, then the pullback of
    a random cotangent, the forward output consumed) with the forward forced to `impl` and the
    backward to `bwd_impl`: what a training step does per block. MACs per call = 3 x forward MACs
    (forward, input and weight gradients; recompute not counted). `impl` in the row is 'impl/bwd_impl'."""
    dt = compute_dtype(dtype)
    op = OPS[problem.op]
    params = problem.make_params(jax.random.key(1))
    static = problem.static()
    row = dict(environment(dtype), kind="block_train", model=model, block=problem.label(), block_count=count,
               impl=f"{impl}/{bwd_impl}", infer_img_size=problem.h, infer_batch_size=problem.batch,
               param_count=None, infer_gmacs=3 * problem.macs() / problem.batch / 1e9, infer_macts=None,
               protocol=protocol.describe())
    x0 = problem.make_x(jax.random.key(0), dt)
    for name, bwd in ((impl, False), (bwd_impl, True)):
        if (reason := op.why_unsupported(name, x0, params, jax.default_backend(), bwd=bwd, **static)):
            return dict(row, status=f"unsupported: {'backward ' if bwd else ''}{reason}")

    def fwd_bwd(x, dy):  # y is returned too: a dead forward would be removed by XLA
        y, pullback = jax.vjp(lambda a, p: op(a, p, impl=impl, bwd_impl=bwd_impl, **static), x, params)
        return y, pullback(dy)

    t = time_call(fwd_bwd, lambda i: (problem.make_x(jax.random.key(10 + i), dt),
                                      problem.make_x(jax.random.key(1000 + i), dt)), protocol=protocol)
    return dict(_efficiency(row, 3 * problem.macs(), t, peak_matmul), status="ok", per_kernel=t.per_kernel)
