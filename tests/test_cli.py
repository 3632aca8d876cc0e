"""The `convfirst models`, `analyze` and `bench` subcommands, run in-process through convfirst.cli.main."""
from __future__ import annotations

import json

import pytest

from convfirst.cli import main
from convfirst.cost.layers import model_macs
from convfirst.models import model_spec


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json(capsys):
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"convfirst_tiny", "convnext_tiny", "efficientnet_b0"} <= set(rows)
    cnx = rows["convnext_tiny"]
    assert cnx["resolution"] == 224 and cnx["params"] == 28_589_128
    assert cnx["gmacs"] == pytest.approx(4.4555, abs=1e-4)
    assert cnx["top1"] == pytest.approx(82.07) and "convnext_tiny" in cnx["top1_source"]
    assert rows["convfirst_tiny"]["top1"] is None
    assert set(cnx) == {"name", "family", "resolution", "params", "gmacs", "top1", "top1_source"}


def test_models_table_and_pattern(capsys):
    code, out, _ = run(capsys, "models", "convnext*")
    assert code == 0 and "convnext_large" in out and "efficientnet" not in out
    code, _, err = run(capsys, "models", "resnet*")
    assert code == 2 and "no registered model matches 'resnet*'" in err


def test_analyze_json(capsys):
    code, out, _ = run(capsys, "analyze", "convfirst_tiny", "--device", "h100", "--json")
    assert code == 0
    d = json.loads(out)
    spec = model_spec("convfirst_tiny")
    assert (d["model"], d["batch"], d["dtype"], d["device"]["key"]) == ("convfirst_tiny", 128, "bf16", "h100")
    assert d["macs_per_image"] == model_macs(spec)
    assert d["device"]["peak_macs_per_s"] == pytest.approx(494.7e12)
    assert d["ideal_latency_s"] == pytest.approx(128 * model_macs(spec) / 494.7e12)
    assert d["ridge_macs_per_byte"] == pytest.approx(147.7, abs=0.1)
    assert len(d["blocks"]) == len(spec.layers)
    lw, fu = d["layerwise"], d["fused"]
    assert fu["waterline_s"] < lw["waterline_s"] and fu["dram_bytes"] < lw["dram_bytes"]
    for ex in (lw, fu):
        assert ex["label"] == "waterline (reconstructed)"
        assert ex["ideal_s"] == pytest.approx(d["ideal_latency_s"])
        assert ex["waterline_s"] == pytest.approx(sum(k["bound_s"] for k in ex["kernels"]))
        assert 0 < ex["efficiency_bound"] <= 1
    block = next(b for b in d["blocks"] if b["kind"] == "convfirst")
    assert set(block) >= {"macs", "params", "act_bytes", "layerwise", "fused", "tile"}
    assert block["layerwise"]["bound"] in ("compute", "memory", "mixed")
    assert block["fused"]["intensity"] > block["layerwise"]["intensity"]


def test_analyze_default_model_text_and_plot(capsys, tmp_path):
    png = tmp_path / "waterline.png"
    code, out, _ = run(capsys, "analyze", "--batch", "16", "--dtype", "fp16", "--device", "rtx4090",
                       "--plot", str(png))
    assert code == 0
    assert "convfirst_tiny" in out and "waterline" in out and "predicted efficiency" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.parametrize("argv,valid", [
    (("analyze", "resnet50"), "convnext_tiny"),
    (("analyze", "--device", "v100"), "valid: h100, h100_pcie, h200"),
    (("analyze", "--dtype", "int8"), "valid: bf16, fp16, fp16_acc16, tf32, fp32"),
    (("analyze", "--tile", "eight"), "--tile must look like 8x8"),
])
def test_analyze_errors_list_valid_choices(capsys, argv, valid):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("convfirst analyze: error:") and valid in err


def test_analyze_resolution_and_tile_overrides(capsys):
    code, out, _ = run(capsys, "analyze", "convnext_tiny", "--resolution", "112", "--tile", "4x4", "--batch", "2",
                       "--json")
    assert code == 0
    d = json.loads(out)
    assert d["resolution"] == 112 and d["batch"] == 2
    assert d["macs_per_image"] == model_macs(model_spec("convnext_tiny").replace(resolution=112))
    # 4x4 everywhere, clipped to the 3x3 maps of the last stage
    assert {b["tile"]["tile"] for b in d["blocks"] if "tile" in b} == {"4x4/m64", "3x3/m64"}


def test_bench_writes_the_stable_csv_on_cpu(capsys, tmp_path):
    """`convfirst bench` end to end on CPU (wall-clock timing): one model row and its block rows."""
    import csv

    from convfirst.benchmark import COLUMNS

    path = tmp_path / "bench.csv"
    code, out, _ = run(capsys, "bench", "--models", "convfirst_pico", "--impl", "xla,auto", "--batch", "2",
                       "--warmup", "1", "--iters", "2", "--no-matmul-peak", "--blocks", "--csv", str(path),
                       "--jsonl", str(tmp_path / "bench.jsonl"))
    assert code == 0 and "convfirst_pico" in out and "img/s" in out
    with open(path) as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS
    assert rows[0]["kind"] == "model" and rows[0]["status"] == "ok" and float(rows[0]["infer_step_time"]) > 0
    assert float(rows[0]["infer_wall_time"]) > 0 and float(rows[0]["infer_pipelined_time"]) > 0
    assert "pipelined" in out  # the printed row shows all three timings
    assert all(r["status"] == "ok" for r in rows) and {r["impl"] for r in rows} == {"xla", "auto"}
    assert {r["kind"] for r in rows if r["impl"] == "xla"} == {"model", "block"}
    full = [json.loads(line) for line in (tmp_path / "bench.jsonl").read_text().splitlines()]
    auto_blocks = [r for r in full if r["kind"] == "block" and r["impl"] == "auto"]
    assert auto_blocks and all(r["resolved_impl"] == "xla" for r in auto_blocks)  # CPU: auto is xla
    assert rows[0]["timing_method"] == "wallclock" and rows[0]["infer_gmacs"]
    code, out, _ = run(capsys, "bench", "--models", "convfirst_pico", "--impl", "xla", "--batch", "2", "--warmup",
                       "1", "--iters", "2", "--no-matmul-peak", "--breakdown", "--fold-ahead", "--csv", str(path))
    assert code == 0 and "no breakdown: no per-kernel times" in out  # said, not silently skipped
    with open(path) as f:
        assert next(csv.DictReader(f))["protocol"].endswith(",weights-folded-ahead,compiler-layouts")
    code, _, err = run(capsys, "bench", "--models", "convfirst_tiyn")
    assert code == 2 and "convfirst_tiny" in err  # unknown model: the close match is named


def test_bench_keeps_the_rows_it_finished_when_a_later_one_crashes(capsys, tmp_path, monkeypatch):
    """Each row reaches the CSV and JSONL as it is measured: a crash (or a timeout) in the second
    model loses only that row."""
    import csv

    from convfirst import benchmark

    real = benchmark.bench_model

    def flaky(name, impl, **kw):
        if impl == "auto":
            raise RuntimeError("simulated crash in the second row")
        return real(name, impl, **kw)

    monkeypatch.setattr(benchmark, "bench_model", flaky)
    path, jsonl = tmp_path / "bench.csv", tmp_path / "bench.jsonl"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(capsys, "bench", "--models", "convfirst_pico", "--impl", "xla,auto", "--batch", "2", "--warmup", "1",
            "--iters", "2", "--no-matmul-peak", "--csv", str(path), "--jsonl", str(jsonl))
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [(r["impl"], r["status"]) for r in rows] == [("xla", "ok")]
    assert [json.loads(line)["impl"] for line in jsonl.read_text().splitlines()] == ["xla"]


def test_bench_flags_xla_autotuning_outliers(capsys):
    from convfirst.commands.bench import _flag_outlier

    row = {"model": "efficientnet_b5", "block": "", "impl": "xla", "status": "ok",
           "per_kernel": [["_Z15fft2d_r2c_32x32IfEv", 2.0], ["gemm", 1.0]]}
    assert _flag_outlier(row, "bf16")["status"] == "outlier"
    assert "fft2d_" in capsys.readouterr().err
    assert _flag_outlier(dict(row, per_kernel=[["gemm", 1.0]]), "bf16")["status"] == "ok"


def test_tune_checks_its_arguments_before_asking_for_a_gpu(capsys):
    """A typo in --only names the shapes there are; with valid arguments, a CPU host is told that
    tuning needs a GPU (nothing is timed or written)."""
    code, _, err = run(capsys, "tune", "--models", "convfirst_tiny", "--only", "13x13")
    assert code == 2 and "'13x13'" in err and "convfirst_block_14x14x256-1024-256_k3_g8_silu" in err
    code, _, err = run(capsys, "tune", "--models", "convfirst_tiny", "--only", "14x14x256")
    assert code == 2 and "needs a GPU" in err
