"""The experiment runner on CPU: fake-timed cells of tiny models in fresh processes, results.jsonl,
resume after failures, kills and torn writes, reports (CSV, Markdown, PNG), the measured-waterline
split, the small-scale training experiment and docs/results.md generation."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convfirst.cli import main as cli_main
from experiments import cells, report, run
from experiments.paper_reference import PAPER_EFFICIENCY, TIMM_RTX3090, paper_range

PNG = b"\x89PNG\r\n\x1a\n"


class Args:
    """The options of `convfirst reproduce` as run.execute reads them."""

    def __init__(self, out, **kw):
        self.out, self.timing, self.time_limit, self.retry_failed = str(out), "fake", None, False
        self.only, self.rerun, self.report_only, self.no_report, self.accuracy = [], False, False, False, []
        self.__dict__.update(kw)


def rows_of(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / run.RESULTS).read_text().splitlines() if line.strip()]


def check_report(out, name: str) -> str:
    """The report's Markdown; every image it links exists and is a PNG."""
    text = (Path(out) / f"{name}.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(\./([^)]+)\)", text)
    assert links, f"{name}.md links no plot"
    for link in links:
        assert (Path(out) / link).read_bytes()[:8] == PNG, link
    assert (Path(out) / f"{name}.csv").exists() or list(Path(out).glob(f"{name}_*.csv"))
    return text


@pytest.fixture
def launches(monkeypatch):
    """Counts the cell processes the runner starts."""
    started = []
    real = subprocess.Popen

    def counting(cmd, *a, **k):
        if "--cell" in cmd:
            started.append(json.loads(cmd[cmd.index("--cell") + 1]))
        return real(cmd, *a, **k)

    monkeypatch.setattr(run.subprocess, "Popen", counting)
    return started


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    """efficiency-table:cpu with fake timing, run once through the CLI (6 cells)."""
    out = tmp_path_factory.mktemp("efficiency_table")
    assert cli_main(["reproduce", "efficiency-table:cpu", "--out", str(out), "--timing", "fake"]) == 0
    return out


def test_unknown_experiment_lists_the_valid_names(capsys):
    assert cli_main(["reproduce", "efficiency-tabel", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'efficiency-tabel'" in err
    for name in run.EXPERIMENTS:
        assert name in err
    with pytest.raises(ValueError, match="unknown config argument 'fast'"):
        run.load(run.config_spec("waterline:fast"))


def test_cells_are_named_by_every_parameter():
    table = run.load(run.config_spec("efficiency-table"))
    quick = run.load(run.config_spec("efficiency-table:quick"))
    full_ids = [cells.cell_id(c) for c in cells.expand(table, "real")]
    quick_ids = [cells.cell_id(c) for c in cells.expand(quick, "real")]
    assert len(full_ids) == len(set(full_ids)) == 30 and full_ids[:len(quick_ids)] == quick_ids  # quick runs first
    gap = run.load(run.config_spec("efficiency-gap"))
    assert [cells.cell_id(c) for c in cells.expand(gap, "real")] == full_ids  # the gap reuses the table's cells
    fake_ids = {cells.cell_id(c) for c in cells.expand(table, "fake")}
    assert not fake_ids & set(full_ids)  # fake rows never satisfy a real run
    cell = cells.expand(table, "real")[0]
    assert cells.cell_id(dict(reversed(list(cell.items())))) == cells.cell_id(cell)
    assert cells.cell_id(dict(cell, batch=64)) != cells.cell_id(cell)
    assert cells.parse_model("convfirst_pico:kernel_size=7,norm=layer,layer_scale=1e-06") == \
        ("convfirst_pico", {"kernel_size": 7, "norm": "layer", "layer_scale": 1e-6})
    ablations = run.load(run.config_spec("ablations"))
    ids = [cells.cell_id(c) for c in cells.expand(ablations, "real")]
    assert len(ids) == len(set(ids))  # cells shared by groups run once
    with pytest.raises(ValueError, match="unknown timing backend 'slow'; valid: real, fake"):
        cells.expand(table, "slow")


def test_whole_model_cells_refuse_block_overrides():
    from experiments.cell import bench_resolution

    assert bench_resolution("efficientnet_b0:resolution=32") == 32
    assert bench_resolution("convnext_tiny") is None
    with pytest.raises(ValueError, match="only the resolution override"):
        bench_resolution("convfirst_tiny:group_width=16")


def test_paper_reference_reproduces_the_rtx3090_cross_check():
    """paper.md 7.2: E = GMACs x img/s / peak; 4.6 % (B0) ... 34.2 % (ConvNeXt-L) against the fp16-acc peak."""
    assert TIMM_RTX3090["efficientnet_b0"].efficiency("fp16_acc16") == pytest.approx(0.0464, abs=5e-4)
    assert TIMM_RTX3090["efficientnet_b7"].efficiency("fp16_acc16") == pytest.approx(0.070, abs=5e-4)
    assert TIMM_RTX3090["convnext_tiny"].efficiency("fp16_acc16") == pytest.approx(0.196, abs=5e-4)
    assert TIMM_RTX3090["convnext_large"].efficiency("fp16_acc16") == pytest.approx(0.342, abs=5e-4)
    assert TIMM_RTX3090["efficientnet_b0"].efficiency("fp16") == pytest.approx(0.093, abs=1e-3)
    assert paper_range("mbconvnet_gw8") == PAPER_EFFICIENCY["efficientnet"] == (5.0, 8.0)
    assert paper_range("convfirst") == (47.0, 55.0) and paper_range("resnet") is None


def test_fake_efficiency_table(table_dir):
    from convfirst.cost.analysis import analyze

    rows = rows_of(table_dir)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["env"]["timing_method"] == "fake" and r["env"]["device"].startswith("FAKE")
        assert r["result"]["timing_method"] == "fake" and r["result"]["infer_batch_size"] == 8
        assert {"device", "jax_version", "commit", "protocol"} <= set(r["env"])
        # the fake backend's definition: 1.5 x the cost model's waterline of the execution the blocks get
        a = analyze(cells.model_spec_of(r["cell"]["model"]), "h100", 8, "bf16")
        fused = r["cell"]["impl"] == "auto" and r["cell"]["model"] == "convfirst_pico"
        expected = (a.fused if fused else a.layerwise).efficiency_bound / 1.5
        assert r["result"]["eff_datasheet"] == pytest.approx(expected, rel=1e-9)
    pico = {r["cell"]["impl"]: r["result"] for r in rows if r["cell"]["model"] == "convfirst_pico"}
    # as the GPU registry picks without a tuning cache: C=32 -> the Triton kernel, C=64 -> mosaic_mlp
    assert [b["impl"] for b in pico["auto"]["block_impls"]] == ["pallas_fused", "mosaic_mlp"]
    assert all(b["impl"] == "xla" for b in pico["xla"]["block_impls"])
    text = check_report(table_dir, "efficiency_table")
    assert report.FAKE_BANNER in text and "| convnext |" in text and "19-35" in text


def test_efficiency_gap_reuses_the_table_cells(table_dir, tmp_path, launches):
    out = tmp_path / "gap"
    shutil.copytree(table_dir, out)
    workdir = tmp_path / "train"
    workdir.mkdir()
    (workdir / "metrics.jsonl").write_text(json.dumps({"step": 50, "val_accuracy": 0.9}) + "\n"
                                           + json.dumps({"step": 100, "val_accuracy": 0.95}) + "\n")
    code = cli_main(["reproduce", "efficiency-gap:cpu", "--out", str(out), "--timing", "fake",
                     "--accuracy", f"convfirst_pico={workdir}"])
    assert code == 0 and launches == []
    text = check_report(out, "efficiency_gap")
    assert f"training workdir {workdir} (val_accuracy at step 100)" in text
    assert "| convfirst_pico | convfirst | xla |" in text and "| 95 |" in text
    assert "Not plotted" in text and "convnext_tiny:resolution=32" in text  # no accuracy at 32 px


def test_resume_after_crash_and_torn_write(table_dir, tmp_path, launches, monkeypatch):
    # a cell process that dies without a result is recorded as crashed; a rerun skips it unless asked
    wrapper = tmp_path / "crashing_cell.py"
    wrapper.write_text(
        "import json, os, runpy, sys\n"
        "cell = json.loads(sys.argv[sys.argv.index('--cell') + 1])\n"
        "if cell['impl'] == 'auto' and not os.path.exists(os.environ['CRASH_FLAG']):\n"
        "    open(os.environ['CRASH_FLAG'], 'w').close()\n"
        "    os._exit(9)\n"
        "sys.argv = ['experiments.cell'] + sys.argv[1:]\n"
        "runpy.run_module('experiments.cell', run_name='__main__')\n")
    monkeypatch.setenv("CRASH_FLAG", str(tmp_path / "crashed_once"))
    config = run.load(run.config_spec("efficiency-table:cpu"))
    out, only = tmp_path / "crash", ("model=convfirst_pico",)
    kw = dict(spec="efficiency-table:cpu", command="test", timing="fake", only=only)
    counts = run.run_experiment(config, out, cell_command=(sys.executable, str(wrapper)), **kw)
    assert counts["launched"] == 2 and counts["failed"] == 1
    crashed = [r for r in rows_of(out) if r["status"] != "ok"]
    assert len(crashed) == 1 and crashed[0]["status"] == "crashed" and "exit code 9" in crashed[0]["error"]
    assert run.run_experiment(config, out, **kw)["launched"] == 0
    assert "Failed cells" in report.render(config, out)[0]
    counts = run.run_experiment(config, out, retry_failed=True, **kw)
    assert counts["launched"] == 1 and counts["ok"] == 1
    assert len(launches) == 3

    # a run killed while writing its last line: the torn cell runs again, nothing else does
    out = tmp_path / "torn"
    shutil.copytree(table_dir, out)
    lines = (out / run.RESULTS).read_text().splitlines(keepends=True)
    (out / run.RESULTS).write_text("".join(lines[:-1]) + lines[-1][:40])
    del launches[:]
    counts = run.run_experiment(config, out, spec="efficiency-table:cpu", command="test", timing="fake")
    assert counts["launched"] == 1 and launches[0]["model"] == json.loads(lines[-1])["cell"]["model"]
    done, bad = run.read_results(out)
    assert bad == 1 and len(done) == 6 and all(r["status"] == "ok" for r in done.values())


def _cell_processes(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "experiments.cell" in cmd and marker in cmd:
            pids.append(int(proc.name))
    return pids


def test_killed_run_resumes_and_waterline_report(tmp_path, launches):
    """SIGKILL the runner after its first cell: the running cell dies with it, the rerun does the rest."""
    out = tmp_path / "waterline"
    cmd = [sys.executable, "-m", "experiments.run", "--config",
           str(run.CONFIG_DIR / "waterline.py") + ":cpu", "--out", str(out), "--timing", "fake", "--no-report"]
    proc = subprocess.Popen(cmd, cwd=run.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ((out / run.RESULTS).exists() and (out / run.RESULTS).read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "the runner ended before its first cell"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(50):  # the cell in flight gets SIGKILL from PR_SET_PDEATHSIG
        if not _cell_processes(str(out)):
            break
        time.sleep(0.1)
    assert not _cell_processes(str(out))
    finished = len(rows_of(out))
    assert 1 <= finished < 4
    assert cli_main(["reproduce", "waterline:cpu", "--out", str(out), "--timing", "fake"]) == 0
    assert len(launches) == 4 - finished and len(rows_of(out)) == 4

    text = check_report(out, "waterline")
    assert report.FAKE_BANNER in text
    summary = {(r["model"], r["impl"]): r for r in _csv(out / "waterline.csv")}
    for s in summary.values():
        parts = sum(float(s[k]) for k in ("ideal_ms", "recompute_loss_ms", "memory_bound_loss_ms", "kernel_loss_ms"))
        assert parts == pytest.approx(float(s["measured_ms"]), rel=1e-9)
        # fake time is 1.5 x each layer's bound, so the kernel loss is half the waterline
        assert float(s["kernel_loss_ms"]) == pytest.approx(0.5 * float(s["waterline_ms"]), rel=1e-9)
    pico = summary[("convfirst_pico", "auto")]
    # 2 blocks run pallas_fused, 2 mosaic_mlp: all 4 kernels matched by name in the forward
    assert pico["fused_blocks"] == pico["fused_kernels_matched"] == "4"
    assert float(summary[("convfirst_pico", "xla")]["memory_bound_loss_ms"]) > float(pico["memory_bound_loss_ms"])


def _csv(path):
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def test_measured_waterline_scales_blocks_when_the_remainder_is_negative():
    """Blocks timed alone may sum to more than the forward: layers are scaled to add up to it."""
    from experiments import fake_timing
    from experiments.cell import layer_blocks
    from experiments.measured_waterline import SplitUnavailable, measure

    cell = {"kind": "waterline", "model": "convfirst_pico", "impl": "xla", "batch": 4, "dtype": "bf16", "warmup": 1,
            "iters": 1, "timing": "fake"}
    model = fake_timing.model(cell)
    blocks = fake_timing.blocks(cell, 4)
    layers = layer_blocks(cells.model_spec_of("convfirst_pico"), 4)
    block_sum = sum(b["infer_step_time"] * b["block_count"] for b in blocks)
    model["infer_step_time"] = 0.8 * block_sum
    mw = measure(cell, {"model": model, "blocks": blocks, "layer_blocks": layers})
    assert mw.block_scale == pytest.approx(0.8) and mw.remainder_s < 0
    assert sum(lt.measured_s for lt in mw.layers) == pytest.approx(model["infer_step_time"] * 1e-3)
    assert all(lt.measured_s == 0 for lt in mw.layers if lt.block is None)
    assert mw.waterline.measured_s == pytest.approx(mw.model_s)
    blocks[0] = dict(blocks[0], status="error: RuntimeError: boom")
    with pytest.raises(SplitUnavailable, match="boom"):
        measure(cell, {"model": model, "blocks": blocks, "layer_blocks": layers})


def test_cell_paths_of_the_gpu_import_without_data_and_config_libraries(tmp_path):
    """The GPU machine lacks tensorflow_datasets and grain: timed cells must not import them."""
    code = f"""
import json, sys
for m in ("tensorflow_datasets", "grain", "tensorflow"):
    sys.modules[m] = None
from experiments import cell, fake_timing, measured_waterline
spec = {{"kind": "waterline", "model": "convfirst_pico", "impl": "auto", "batch": 2, "dtype": "bf16",
         "warmup": 1, "iters": 1, "timing": "fake"}}
sys.exit(cell.main(["--cell", json.dumps(spec), "--result", {str(tmp_path / 'r.json')!r}, "--workdir", "."]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=run.REPO, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["status"] == "ok" and len(result["result"]["layer_blocks"]) == 7


def test_failing_cell_is_recorded_with_its_error(tmp_path):
    from experiments.cell import main as cell_main

    spec = {"kind": "bench_model", "model": "convfirst_pico:bogus=1", "impl": "xla", "batch": 2, "dtype": "bf16",
            "warmup": 1, "iters": 1, "timing": "fake", "oom_retry": False}
    assert cell_main(["--cell", json.dumps(spec), "--result", str(tmp_path / "r.json"), "--workdir", "."]) == 1
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["status"] == "failed" and "unknown override(s) ['bogus']" in result["error"]


@pytest.mark.slow
def test_fake_ablations_render_every_group(tmp_path):
    out = tmp_path / "ablations"
    assert cli_main(["reproduce", "ablations:cpu", "--out", str(out), "--timing", "fake"]) == 0
    text = check_report(out, "ablations")
    for group in ("impl", "group_width", "expansion", "batch", "tiles", "training"):
        assert f"#### {group}" in text and (out / f"ablations_{group}.png").read_bytes()[:8] == PNG
    training = _csv(out / "ablations_training.csv")
    assert {r["requested_impl"] for r in training} == {
        f"{f}/{b}" for f in ("xla", "xla_native", "pallas_fused", "mosaic_mlp")
        for b in ("xla", "xla_native", "pallas_fused", "mosaic_mlp")}
    fused = [r for r in training if r["requested_impl"] == "pallas_fused/pallas_fused"]
    assert fused and all(r["status"] == "ok" and float(r["speedup_vs_xla"]) > 1 for r in fused)
    impl = _csv(out / "ablations_impl.csv")
    fused = [r for r in impl if r["requested_impl"] == "pallas_fused"]
    assert fused and all(float(r["speedup_vs_xla"]) > 1 for r in fused)  # the cost model's fused traffic is lower
    tiles = _csv(out / "ablations_tiles.csv")
    assert sum(r["config"] == '"default"' for r in tiles) == 2 and len(tiles) > 2


@pytest.mark.slow
def test_small_scale_trains_on_cpu(tmp_path, monkeypatch):
    from convfirst.cost.layers import model_macs
    from convfirst.models import model_spec

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # the cell prepares digits there
    out = tmp_path / "small"
    assert cli_main(["reproduce", "small-scale:test", "--out", str(out)]) == 0
    (row,) = rows_of(out)
    assert row["status"] == "ok", row.get("error")
    r = row["result"]
    assert 0.0 <= r["val_accuracy"] <= 1.0 and r["steps"] == 4 and r["family"] == "convfirst"
    assert r["macs"] == model_macs(model_spec("convfirst_pico", resolution=8, num_classes=10))
    assert (Path(r["workdir"]) / "metrics.jsonl").exists()
    text = check_report(out, "small_scale")
    assert "small scale (8x8 digits), not ImageNet" in text


@pytest.mark.slow
def test_real_block_cell_on_cpu():
    """The real backend (wall-clock on a CPU): 'auto' resolves per block as the registry does on this host."""
    from experiments.cell import run_cell

    cell = {"kind": "bench_block", "model": "convfirst_pico", "impl": "auto", "batch": 1, "dtype": "bf16",
            "warmup": 1, "iters": 2, "timing": "real"}
    rows = run_cell(cell, Path("."))["blocks"]
    assert [r["block_count"] for r in rows] == [2, 2]
    for r in rows:
        assert r["status"] == "ok" and r["impl"] == "xla" and r["timing_method"] == "wallclock"
        assert r["infer_step_time"] > 0 and r["requested_impl"] == "auto"


def test_docs_from_committed_results(table_dir, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(table_dir, root / "efficiency_table")
    docs = tmp_path / "docs" / "results.md"
    docs.parent.mkdir()
    report.write_docs(root, docs)
    text = docs.read_text()
    assert "## efficiency-table" in text and "## efficiency-gap" in text and report.FAKE_BANNER in text
    assert "convfirst reproduce efficiency-table:cpu" in text  # the command that produced it
    assert "Not run yet. Command: `convfirst reproduce waterline --out benchmarks/results/waterline" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (docs.parent / link).resolve().read_bytes()[:8] == PNG, link


def test_time_limit_leaves_the_running_cell_unrecorded_and_cell_timeout_is_recorded(tmp_path, monkeypatch):
    sleeper = tmp_path / "sleeping_cell.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    config = run.load(run.config_spec("efficiency-table:cpu"))
    kw = dict(spec="efficiency-table:cpu", command="test", timing="fake", cell_command=(sys.executable, str(sleeper)))
    monkeypatch.setattr(run, "MIN_CELL_S", 0.5)
    t0 = time.monotonic()
    counts = run.run_experiment(config, tmp_path / "limited", time_limit=2, **kw)
    assert time.monotonic() - t0 < 20
    assert counts["launched"] == 1 and counts["left"] == 6 and not (tmp_path / "limited" / run.RESULTS).exists()
    config.cell_timeout_s = 1
    counts = run.run_experiment(config, tmp_path / "timeout", only=("model=convfirst_pico", "impl=xla"), **kw)
    (row,) = rows_of(tmp_path / "timeout")
    assert counts["failed"] == 1 and row["status"] == "timeout" and "cell_timeout_s" in row["error"]


def test_autotuning_outliers_are_rerun_in_fresh_processes_and_left_out(tmp_path, monkeypatch):
    """A cell whose kernels show cuDNN's FFT engine (XLA's conv autotuner gone wrong in that process)
    is recorded as 'outlier' and launched again; an old 'ok' row with such kernels reruns on resume."""
    from experiments.outliers import outlier_reason

    fake = tmp_path / "outlier_cell.py"
    fake.write_text(
        "import json, os, sys\n"
        "counter = os.environ['OUTLIER_COUNT']\n"
        "n = int(open(counter).read()) if os.path.exists(counter) else 0\n"
        "open(counter, 'w').write(str(n + 1))\n"
        "kernels = [['_Z15fft2d_r2c_32x32IfEv', 3.5], ['gemm', 1.0]] if n < 2 else [['gemm', 1.0]]\n"
        "result = {'infer_step_time': sum(ms for _, ms in kernels), 'per_kernel': kernels}\n"
        "path = sys.argv[sys.argv.index('--result') + 1]\n"
        "json.dump({'status': 'ok', 'env': {}, 'result': result}, open(path, 'w'))\n")
    monkeypatch.setenv("OUTLIER_COUNT", str(tmp_path / "count"))
    config = run.load(run.config_spec("efficiency-table:cpu"))
    kw = dict(spec="efficiency-table:cpu", command="test", timing="fake", only=("model=convfirst_pico", "impl=xla"),
              cell_command=(sys.executable, str(fake)))
    counts = run.run_experiment(config, tmp_path / "out", **kw)
    statuses = [r["status"] for r in rows_of(tmp_path / "out")]
    assert counts["launched"] == 1 and counts["ok"] == 1 and statuses == ["outlier", "outlier", "ok"]
    assert "fft2d_" in rows_of(tmp_path / "out")[0]["error"]
    assert run.run_experiment(config, tmp_path / "out", **kw)["launched"] == 0
    assert run.run_experiment(config, tmp_path / "out", rerun=True, **kw)["launched"] == 1  # --rerun
    assert [r["status"] for r in rows_of(tmp_path / "out")][-1] == "ok"

    # a row written before the check existed: classified on reading, run again
    legacy = rows_of(tmp_path / "out")[0] | {"status": "ok"}
    legacy.pop("error")
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / run.RESULTS).write_text(json.dumps(legacy) + "\n")
    assert run.read_results(tmp_path / "legacy")[0][legacy["id"]]["status"] == "outlier"
    assert run.run_experiment(config, tmp_path / "legacy", **kw)["ok"] == 1
    # cuDNN's fp32 engine is an outlier only in a 16-bit program
    fp32_engine = {"per_kernel": [["_Z33convolve_common_engine_float_NHWCIffLi1024E", 9.0]]}
    assert outlier_reason(fp32_engine, "bf16") and outlier_reason(fp32_engine, "f32") is None


def test_fake_timing_reports_an_implementation_the_op_lacks_as_unsupported():
    """mosaic_mlp exists for ConvFirst blocks only: an MBConv cell gets the reason, as on the GPU."""
    from experiments import fake_timing
    from pallas_kernels.problems import BlockProblem

    mbconv = BlockProblem("mbconv_block", 2, 8, 8, 24, 144, group_width=1)
    assert fake_timing._impl(mbconv, "mosaic_mlp", "bf16") == (None, "mbconv_block has no implementation 'mosaic_mlp'")


def test_efficiency_table_with_weights_folded_ahead_has_its_own_cells(tmp_path):
    """`efficiency-table:fold_ahead` cells carry fold_ahead (other ids unchanged), and such a cell
    times the inference copy (ConvNet.for_inference): its protocol says so."""
    from experiments.cell import main as cell_main
    from experiments.configs.reproduce import efficiency_table

    plain = cells.expand(efficiency_table.get_config("cpu"), "real")
    folded = cells.expand(efficiency_table.get_config("cpu,fold_ahead"), "real")
    assert all("fold_ahead" not in c for c in plain) and all(c["fold_ahead"] is True for c in folded)
    assert not {cells.cell_id(c) for c in plain} & {cells.cell_id(c) for c in folded}
    spec = dict(folded[0], model="convfirst_pico", impl="xla", batch=2, warmup=1, iters=1)
    assert cell_main(["--cell", json.dumps(spec), "--result", str(tmp_path / "r.json"), "--workdir", "."]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["status"] == "ok" and result["result"]["protocol"].endswith(",weights-folded-ahead,compiler-layouts")
