"""One cell of an experiment in a fresh process, so that GPU memory fragmentation, compilation caches
and autotuning state of one cell cannot skew the next:

    python -m experiments.cell --cell '{"kind": "bench_model", ...}' --result PATH --workdir DIR

Writes one JSON object to PATH (atomically): {"status": "ok" | "failed", "error"?, "env", "result"}.
Kinds: bench_model (a whole forward), bench_block (every distinct residual block of a model alone),
bench_block_train (the same, forward + backward with `impl` / `bwd_impl`),
waterline (both, plus which implementation each block runs), tile_sweep (every candidate tile config
of a kernel per block), train_small (a short training run on a small dataset, CPU-sized).
Timed kinds run on the real timing protocol (pallas_kernels.timing) or, with timing=fake, on the
synthetic cost-model backend of experiments/fake_timing.py.

The timed kinds import neither tensorflow_datasets nor grain nor ml_collections (absent on the GPU
machine); only train_small needs them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import traceback
from pathlib import Path

from experiments.cells import TIMED, model_spec_of, parse_model, slug, cell_id

ERROR_CHARS = 4000


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", required=True, help="the cell as JSON")
    p.add_argument("--result", required=True, help="write the result JSON object here")
    p.add_argument("--workdir", required=True, help="the experiment's output directory")
    args = p.parse_args(argv)
    follow_runner()
    cell = json.loads(args.cell)
    try:
        out = {"status": "ok", "env": environment(cell), "result": run_cell(cell, Path(args.workdir))}
    except Exception as e:  # recorded as the cell's result: the run goes on with the next cell
        traceback.print_exc()
        out = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:ERROR_CHARS],
               "traceback": traceback.format_exc()[-ERROR_CHARS:]}
    write_json(Path(args.result), out)
    return 0 if out["status"] == "ok" else 1


def follow_runner() -> None:
    """Die with the runner that started this cell (Linux PR_SET_PDEATHSIG), so that a killed run never
    leaves a cell holding the GPU; exit at once if the runner is already gone."""
    from experiments.run import RUNNER_PID

    runner = os.environ.get(RUNNER_PID)
    if not runner:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the runner's own cleanup still kills cells on SIGTERM
        return
    if os.getppid() != int(runner):
        os._exit(1)


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, default=str))
    os.replace(tmp, path)


def run_cell(cell: dict, workdir: Path) -> dict:
    kind = cell["kind"]
    if kind == "train_small":
        return train_small(cell, workdir)
    if cell["timing"] == "fake":
        from experiments import fake_timing as backend
    else:
        backend = RealBackend(cell, workdir)
    if kind == "bench_model":
        return backend.model(cell)
    if kind == "bench_block":
        return {"blocks": backend.blocks(cell, cell["batch"])}
    if kind == "bench_block_train":
        return {"blocks": backend.train_blocks(cell)}
    if kind == "waterline":
        model = backend.model(cell)
        spec = model_spec_of(cell["model"])
        return {"model": model, "blocks": backend.blocks(cell, model["infer_batch_size"]),
                "layer_blocks": layer_blocks(spec, model["infer_batch_size"])}
    if kind == "tile_sweep":
        return {"blocks": backend.tiles(cell)}
    raise ValueError(f"unknown cell kind {kind!r}")


def layer_blocks(spec, batch: int) -> list[str | None]:
    """Per layer of the spec: the label of its block call, or None for stem/downsampling/head."""
    from convfirst.benchmark import block_problem
    from convfirst.cost.layers import layer_costs

    return [p.label() if (p := block_problem(lc, batch)) else None for lc in layer_costs(spec)]


def distinct_blocks(spec, batch: int):
    """[(problem, first LayerCost, count)] over the distinct block calls, in first-occurrence order."""
    from convfirst.benchmark import block_problem
    from convfirst.cost.layers import layer_costs

    found = {}
    for lc in layer_costs(spec):
        if (p := block_problem(lc, batch)) is not None:
            found.setdefault(p, [lc, 0])[1] += 1
    return [(p, lc, n) for p, (lc, n) in found.items()]


def selected_impl(problem, impl: str, dtype, platform_name: str) -> str | None:
    """The implementation `impl` resolves to for this block on `platform_name` (what the model runs), by
    the registry's candidate order and support checks, on shapes only; None when none can run it."""
    import jax

    from pallas_kernels import OPS

    op, static = OPS[problem.op], problem.static()
    x = jax.ShapeDtypeStruct(problem.x_shape(), dtype)
    params = jax.eval_shape(problem.make_params, jax.random.key(1))
    names, _ = op.candidates(impl, x, params, platform_name, static)
    return next((n for n in names if op.why_unsupported(n, x, params, platform_name, **static) is None), None)


def bench_resolution(ref: str) -> int | None:
    """Whole-model benchmarks take a resolution override only (convfirst.benchmark.bench_model)."""
    name, overrides = parse_model(ref)
    other = sorted(set(overrides) - {"resolution"})
    if other:
        raise ValueError(f"whole-model cells accept only the resolution override, got {other} in {ref!r}; "
                         "use bench_block cells for block variants")
    return overrides.get("resolution")


class RealBackend:
    """The timing protocol of pallas_kernels.timing (CUPTI on GPUs, wall-clock elsewhere)."""

    def __init__(self, cell: dict, workdir: Path):
        from convfirst.benchmark import compute_dtype
        from pallas_kernels.timing import Protocol

        self.dtype = compute_dtype(cell["dtype"])
        self.protocol = Protocol(warmup=cell["warmup"], iterations=cell["iters"])
        self.peak_matmul = matmul_peak(cell["dtype"], self.dtype, workdir) if _on_gpu() else None

    def model(self, cell: dict) -> dict:
        from convfirst import benchmark
        from convfirst.commands.bench import _retrying

        name, _ = parse_model(cell["model"])
        resolution = bench_resolution(cell["model"])
        row = _retrying(lambda b: benchmark.bench_model(
            name, cell["impl"], batch=b, dtype=cell["dtype"], protocol=self.protocol,
            peak_matmul=self.peak_matmul, resolution=resolution, fold_ahead=cell.get("fold_ahead", False)),
            cell["batch"], cell.get("oom_retry", True))
        row["block_impls"] = self._impls(cell, row["infer_batch_size"])
        return row

    def _impls(self, cell: dict, batch: int) -> list[dict]:
        import jax

        spec = model_spec_of(cell["model"])
        platform_name = jax.default_backend()
        return [{"block": p.label(), "count": n, "impl": selected_impl(p, cell["impl"], self.dtype, platform_name)}
                for p, _, n in distinct_blocks(spec, batch)]

    def blocks(self, cell: dict, batch: int) -> list[dict]:
        import jax

        from convfirst import benchmark

        rows = []
        for problem, _, count in distinct_blocks(model_spec_of(cell["model"]), batch):
            impl = selected_impl(problem, cell["impl"], self.dtype, jax.default_backend()) \
                if cell["impl"] == "auto" else cell["impl"]
            base = dict(kind="block", model=cell["model"], block=problem.label(), block_count=count,
                        requested_impl=cell["impl"], impl=impl, infer_batch_size=batch,
                        infer_gmacs=problem.macs() / problem.batch / 1e9)
            if impl is None:
                rows.append(dict(base, status="unsupported: no implementation can run this block"))
                continue
            try:
                row = benchmark.bench_block(problem, impl, dtype=cell["dtype"], protocol=self.protocol,
                                            peak_matmul=self.peak_matmul, model=cell["model"], count=count)
            except Exception as e:  # one block's failure must not hide the others' times
                row = dict(base, status=f"error: {type(e).__name__}: {str(e)[:500]}")
            rows.append(dict(row, requested_impl=cell["impl"]))
        return rows

    def train_blocks(self, cell: dict) -> list[dict]:
        from convfirst import benchmark

        rows = []
        for problem, _, count in distinct_blocks(model_spec_of(cell["model"]), cell["batch"]):
            try:
                row = benchmark.bench_block_train(problem, cell["impl"], cell["bwd_impl"], dtype=cell["dtype"],
                                                  protocol=self.protocol, peak_matmul=self.peak_matmul,
                                                  model=cell["model"], count=count)
            except Exception as e:  # one block's failure must not hide the others' times
                row = dict(kind="block_train", model=cell["model"], block=problem.label(), block_count=count,
                           impl=f"{cell['impl']}/{cell['bwd_impl']}",
                           status=f"error: {type(e).__name__}: {str(e)[:500]}")
            rows.append(row)
        return rows

    def tiles(self, cell: dict) -> list[dict]:
        import jax

        from pallas_kernels import OPS
        from pallas_kernels.timing import time_call

        rows = []
        for problem, _, count in distinct_blocks(model_spec_of(cell["model"]), cell["batch"]):
            op, static = OPS[problem.op], problem.static()
            params = problem.make_params(jax.random.key(1))
            x0 = problem.make_x(jax.random.key(0), self.dtype)
            row = dict(block=problem.label(), block_count=count, impl=cell["impl"],
                       infer_gmacs=problem.macs() / problem.batch / 1e9, configs=[])
            reason = op.why_unsupported(cell["impl"], x0, params, jax.default_backend(), **static)
            space = op.implementations[cell["impl"]].candidates
            if reason or space is None:
                rows.append(dict(row, status=f"unsupported: {reason or 'no tile-config space'}"))
                continue
            make = lambda i: (problem.make_x(jax.random.key(10 + i), self.dtype),)  # noqa: E731
            for cfg in [None] + space(problem, params)[:cell["max_configs"]]:
                fn = lambda x, cfg=cfg: op(x, params, impl=cell["impl"], config=cfg, **static)  # noqa: E731
                entry = {"config": "default" if cfg is None else cfg.to_dict()}
                try:
                    entry.update(ms=time_call(fn, make, protocol=self.protocol).median_ms, status="ok")
                except Exception as e:  # a config that does not compile is recorded, not fatal
                    entry.update(status=f"error: {type(e).__name__}: {str(e)[:300]}")
                row["configs"].append(entry)
            rows.append(dict(row, status="ok"))
        return rows


def matmul_peak(name: str, dtype, workdir: Path) -> float:
    """The measured matmul peak (TMAC/s) of this device and dtype: measured by the first cell of a run
    directory and read by the others (DIR/matmul_peak.json), which saves each cell a compile."""
    import jax

    from pallas_kernels.timing import matmul_peak_tmacs

    path = workdir / "matmul_peak.json"
    key = f"{jax.devices()[0].device_kind}|{name}"
    known = json.loads(path.read_text()) if path.exists() else {}
    if key not in known:
        known[key] = matmul_peak_tmacs(dtype)
        write_json(path, known)
    return known[key]


def _on_gpu() -> bool:
    import jax

    return jax.default_backend() == "gpu"


def train_small(cell: dict, workdir: Path) -> dict:
    """Train a (tiny) model briefly with the digits recipe (experiments/configs/digits_convfirst.py);
    the training workdir lives under the experiment's directory, so a killed cell resumes there."""
    from convfirst.cost.layers import model_macs, model_params
    from train import data, trainer
    from train.config_utils import CONFIG_DIR, load_config

    name, overrides = parse_model(cell["model"])
    if cell["dataset"] == "digits":
        from train import digits

        digits.prepare(cell["data_dir"] or data.default_data_dir())
    c = load_config(f"{CONFIG_DIR / 'digits_convfirst.py'}:steps={cell['steps']},batch={cell['batch']}")
    c.seed = cell["seed"]
    c.model.name = name
    for key, value in overrides.items():
        c.model.kwargs[key] = value
    c.aug.resolution = cell["resolution"]
    c.data.name, c.data.data_dir = cell["dataset"], cell["data_dir"]
    c.log_every = min(25, cell["steps"])
    c.ckpt_every, c.eval_every, c.progress = 4 * c.log_every, 0, False
    run_dir = workdir / "train" / slug(cell)
    final = trainer.train(c, run_dir)
    if not final:  # finished before (a resumed cell): the last logged metrics
        from train.metrics import read_metrics

        final = read_metrics(run_dir)[-1]
    num_classes = data.num_classes_of(data.open_source(c.data.name, c.data.train_split, c.data.data_dir))
    spec = model_spec_of(cell["model"] + ("," if ":" in cell["model"] else ":") +
                         f"resolution={cell['resolution']},num_classes={num_classes}")
    return {"model": cell["model"], "family": cell.get("family", spec.family), "resolution": cell["resolution"],
            "macs": model_macs(spec), "params": model_params(spec), "steps": cell["steps"],
            "batch": cell["batch"], "val_accuracy": final.get("val_accuracy"), "val_loss": final.get("val_loss"),
            "train_loss": final.get("loss"), "train_accuracy": final.get("accuracy"), "workdir": str(run_dir),
            "cell": cell_id(cell)}


def environment(cell: dict) -> dict:
    """Where and how the cell ran: device, driver, versions, commit, timing method and protocol."""
    import jax

    from convfirst.benchmark import git_commit

    env = {"platform": jax.default_backend(), "device": jax.devices()[0].device_kind, "driver": _driver(),
           "jax_version": jax.__version__, "python": platform.python_version(), "host": platform.node(),
           "commit": git_commit()}
    if cell["kind"] in TIMED:
        from pallas_kernels.timing import Protocol

        protocol = Protocol(warmup=cell["warmup"], iterations=cell["iters"])
        env["protocol"] = protocol.describe()
        if env["platform"] == "gpu":
            from pallas_kernels import autotune

            env["tuning_cache"] = autotune.read_path().name
        if cell["timing"] == "fake":
            from experiments import fake_timing

            env.update(device=fake_timing.DEVICE_LABEL, timing_method=fake_timing.METHOD,
                       protocol=fake_timing.PROTOCOL)
    return env


def _driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


if __name__ == "__main__":
    sys.exit(main())
