"""Fake timing backend (`--timing fake`): deterministic synthetic latencies from the cost model, so the
runner, the reports and every plot can be tested on a CPU. NOT MEASUREMENTS.

A kernel's fake time is FACTOR x its waterline bound max(C/P, D/B) on the H100 of the hardware table,
for the execution the block would get on a GPU (the cost model's block-fused execution where the
registry would pick an implementation that keeps the hidden activation on chip, else layer-wise).
Rows have the columns of convfirst.benchmark's rows, with timing_method='fake', device and protocol
saying so; reports print a banner over them.
"""
from __future__ import annotations

import platform

import jax

from convfirst.benchmark import _efficiency, block_problem, compute_dtype, git_commit
from convfirst.cost.analysis import analyze, analyze_block
from convfirst.cost.hardware import get_device
from convfirst.cost.layers import model_params
from experiments.cell import distinct_blocks, selected_impl
from experiments.cells import model_spec_of, parse_model
from experiments.measured_waterline import fused_kernel_name
from pallas_kernels import OPS
from pallas_kernels.registry import HIDDEN_ON_CHIP
from pallas_kernels.timing import Timing

FACTOR = 1.5
MATMUL_FRACTION = 0.83  # synthetic "measured" matmul peak as a fraction of the datasheet peak
DEVICE = "h100"
METHOD = "fake"
DEVICE_LABEL = "FAKE (cost model of the NVIDIA H100 SXM5 80GB)"
PROTOCOL = f"fake: cost-model waterline x {FACTOR}, not a measurement"


def _env(dtype: str) -> dict:
    peak = get_device(DEVICE).peak_macs(dtype) / 1e12
    return {"device": DEVICE_LABEL, "jax_version": jax.__version__, "commit": git_commit(), "host": platform.node(),
            "layout": "NHWC", "dtype": dtype, "peak_tmacs_datasheet": peak}


def _timing(ms: float, per_kernel=None) -> Timing:
    return Timing(ms, ms, ms, ms, ms, METHOD, 0, 1, per_kernel)


def _peak_matmul(dtype: str) -> float:
    return MATMUL_FRACTION * get_device(DEVICE).peak_macs(dtype) / 1e12


def _impl(problem, impl: str, dtype: str) -> tuple[str | None, str | None]:
    """(implementation, None) as a GPU would resolve `impl` for the block, or (None, why not)."""
    dt = compute_dtype(dtype)
    if impl == "auto":
        chosen = selected_impl(problem, impl, dt, "gpu")
        return (chosen, None) if chosen else (None, "no implementation can run this block")
    op = OPS[problem.op]
    if impl not in op.names:  # as benchmark.bench_block reports it
        return None, f"{problem.op} has no implementation {impl!r}"
    x = jax.ShapeDtypeStruct(problem.x_shape(), dt)
    params = jax.eval_shape(problem.make_params, jax.random.key(1))
    reason = op.why_unsupported(impl, x, params, "gpu", **problem.static())
    return (None, reason) if reason else (impl, None)


def model(cell: dict) -> dict:
    """A whole forward: one fake kernel per cost-model kernel, in order."""
    name, _ = parse_model(cell["model"])
    spec, batch, dtype = model_spec_of(cell["model"]), cell["batch"], cell["dtype"]
    analysis = analyze(spec, DEVICE, batch, dtype)
    per_kernel, impls = [], {}
    for b in analysis.blocks:
        problem = block_problem(b.layer, batch)
        impl = _impl(problem, cell["impl"], dtype)[0] if problem else "xla"
        if problem:
            entry = impls.setdefault(problem.label(), {"block": problem.label(), "count": 0, "impl": impl})
            entry["count"] += 1
        fused = impl in HIDDEN_ON_CHIP and b.tile is not None
        for k in (b.fused if fused else b.layerwise).kernels:
            named = fused and k.name.endswith(".fused")  # named as the real kernel is
            kname = f"{fused_kernel_name(impl, problem.op)}[{k.name}]" if named else k.name
            per_kernel.append((kname, FACTOR * k.bound_s * 1e3))
    t = _timing(sum(ms for _, ms in per_kernel), tuple(per_kernel))
    row = dict(_env(dtype), kind="model", model=name, block="", block_count=1, impl=cell["impl"],
               infer_img_size=spec.resolution, infer_batch_size=batch, param_count=model_params(spec) / 1e6,
               infer_gmacs=analysis.macs / 1e9, infer_macts=sum(b.layer.out_elements for b in analysis.blocks) / 1e6,
               protocol=PROTOCOL, status="ok")
    row = _efficiency(row, analysis.macs * batch, t, _peak_matmul(dtype))
    return dict(row, per_kernel=list(per_kernel), block_impls=list(impls.values()))


def _block_ms(lc, impl: str, batch: int, dtype: str) -> float:
    b = analyze_block(lc, get_device(DEVICE), dtype, batch)
    return FACTOR * (b.fused if impl in HIDDEN_ON_CHIP else b.layerwise).waterline_s * 1e3


def blocks(cell: dict, batch: int) -> list[dict]:
    """Each distinct block alone, at the implementation the cell asks for (or 'auto' resolves to)."""
    rows = []
    for problem, lc, count in distinct_blocks(model_spec_of(cell["model"]), batch):
        impl, reason = _impl(problem, cell["impl"], cell["dtype"])
        row = dict(_env(cell["dtype"]), kind="block", model=cell["model"], block=problem.label(), block_count=count,
                   impl=impl or cell["impl"], requested_impl=cell["impl"], infer_img_size=problem.h,
                   infer_batch_size=batch, param_count=None, infer_gmacs=problem.macs() / batch / 1e9,
                   infer_macts=None, protocol=PROTOCOL)
        if reason:
            rows.append(dict(row, status=f"unsupported: {reason}"))
            continue
        t = _timing(_block_ms(lc, impl, batch, cell["dtype"]))
        rows.append(dict(_efficiency(row, problem.macs(), t, _peak_matmul(cell["dtype"])), status="ok"))
    return rows


def train_blocks(cell: dict) -> list[dict]:
    """Forward + backward of each distinct block: the forward's fake time plus twice the backward
    implementation's (the backward does the input and weight gradients)."""
    rows = []
    label = f"{cell['impl']}/{cell['bwd_impl']}"
    for problem, lc, count in distinct_blocks(model_spec_of(cell["model"]), cell["batch"]):
        row = dict(_env(cell["dtype"]), kind="block_train", model=cell["model"], block=problem.label(),
                   block_count=count, impl=label, infer_img_size=problem.h, infer_batch_size=cell["batch"],
                   param_count=None, infer_gmacs=3 * problem.macs() / cell["batch"] / 1e9, infer_macts=None,
                   protocol=PROTOCOL)
        reasons = [r for r in (_impl(problem, cell["impl"], cell["dtype"])[1], _bwd_reason(problem, cell)) if r]
        if reasons:
            rows.append(dict(row, status=f"unsupported: {'; '.join(reasons)}"))
            continue
        ms = (_block_ms(lc, cell["impl"], cell["batch"], cell["dtype"])
              + 2 * _block_ms(lc, cell["bwd_impl"], cell["batch"], cell["dtype"]))
        rows.append(dict(_efficiency(row, 3 * problem.macs(), _timing(ms), _peak_matmul(cell["dtype"])), status="ok"))
    return rows


def _bwd_reason(problem, cell: dict) -> str | None:
    op = OPS[problem.op]
    x = jax.ShapeDtypeStruct(problem.x_shape(), compute_dtype(cell["dtype"]))
    params = jax.eval_shape(problem.make_params, jax.random.key(1))
    return op.why_unsupported(cell["bwd_impl"], x, params, "gpu", bwd=True, **problem.static())


def tiles(cell: dict) -> list[dict]:
    """Candidate tile configs of each block, config i at (1 + 0.07 i) x the fused block's fake time."""
    rows = []
    for problem, lc, count in distinct_blocks(model_spec_of(cell["model"]), cell["batch"]):
        impl, reason = _impl(problem, cell["impl"], cell["dtype"])
        row = dict(block=problem.label(), block_count=count, impl=cell["impl"],
                   infer_gmacs=problem.macs() / problem.batch / 1e9, configs=[])
        space = OPS[problem.op].implementations[cell["impl"]].candidates
        if reason or space is None:
            rows.append(dict(row, status=f"unsupported: {reason or 'no tile-config space'}"))
            continue
        base = _block_ms(lc, impl, cell["batch"], cell["dtype"])
        params = problem.make_params(jax.random.key(1))
        configs = [None] + space(problem, params)[:cell["max_configs"]]
        row["configs"] = [{"config": "default" if cfg is None else cfg.to_dict(), "ms": base * (1 + 0.07 * i),
                           "status": "ok"} for i, cfg in enumerate(configs)]
        rows.append(dict(row, status="ok"))
    return rows
