"""Reports: DIR/results.jsonl -> CSV and Markdown tables and PNG plots, per experiment; docs/results.md.

    python -m experiments.report --experiment waterline[:ARG] DIR    # rewrite one run's report
    python -m experiments.report --docs                              # docs/results.md from benchmarks/results/

Each experiment writes DIR/<name>.md, DIR/<name>*.csv and DIR/<name>*.png (name with underscores).
Rows timed with `--timing fake` get a loud banner in every table and plot: they are not measurements.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from experiments import paper_reference as ref
from experiments.cells import cell_id, expand, expand_group, model_spec_of, parse_model
from experiments.plots import impl_sorted
from experiments.run import CONFIG_DIR, EXPERIMENTS, MANIFEST, REPO, config_spec, load, read_results
from pallas_kernels.registry import HIDDEN_ON_CHIP

FAKE_BANNER = ("FAKE TIMING: synthetic numbers from the cost model (--timing fake), NOT MEASUREMENTS; "
               "for testing the pipeline only")
FAKE_NOTE = "FAKE TIMING - NOT MEASUREMENTS"
IMG = "<<dir>>"  # placeholder for the directory of the images, replaced per destination
FAMILY_ORDER = ("efficientnet", "mbconvnet", "convnext", "convfirst")
DOCS = REPO / "docs" / "results.md"
RESULTS_ROOT = REPO / "benchmarks" / "results"
DOCS_SECTIONS = (  # experiment, committed results directory (efficiency-gap reuses the table's cells)
    ("efficiency-table", "efficiency_table"),
    ("efficiency-gap", "efficiency_table"),
    ("waterline", "waterline"),
    ("ablations", "ablations"),
    ("small-scale", "small_scale"),
)


@dataclass
class Results:
    """The rows of one experiment's cells in a run directory (last row per cell)."""

    config: object
    out: Path
    timing: str
    rows: dict[str, dict]  # id -> row, for the experiment's cells that have one
    cells: list[dict]
    manifest: dict = field(default_factory=dict)

    @property
    def fake(self) -> bool:
        return self.timing == "fake"

    @property
    def note(self) -> str:
        return FAKE_NOTE if self.fake else ""

    def ok(self, cells=None) -> list[tuple[dict, dict]]:
        """(cell, result) of the cells (default: all) that finished with status ok."""
        return [(c, self.rows[cell_id(c)]["result"]) for c in (cells if cells is not None else self.cells)
                if self.rows.get(cell_id(c), {}).get("status") == "ok"]

    def group_cells(self, group) -> list[dict]:
        return expand_group(group, self.timing)

    @property
    def missing(self) -> list[dict]:
        return [c for c in self.cells if cell_id(c) not in self.rows]

    @property
    def failed(self) -> list[dict]:
        return [r for c in self.cells if (r := self.rows.get(cell_id(c))) and r.get("status") != "ok"]


def collect(config, out) -> Results:
    """Rows of `config`'s cells in `out`: real timing when any real row exists, else fake."""
    out = Path(out)
    rows, _ = read_results(out)
    manifest = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).exists() else {}
    timing = "real"
    if not any(cell_id(c) in rows for c in expand(config, "real")) and \
            any(cell_id(c) in rows for c in expand(config, "fake")):
        timing = "fake"
    cells = expand(config, timing)
    return Results(config, out, timing, {cell_id(c): rows[cell_id(c)] for c in cells if cell_id(c) in rows},
                   cells, manifest)


# ---------------------------------------------------------------------------------------------- tables
def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    return str(value)


def md_table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    """Markdown table of `rows` with (header, key) columns."""
    out = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(r.get(k)) for _, k in columns) + " |" for r in rows]
    return out + [""]


def write_csv(path: Path, rows: list[dict]) -> Path:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows([{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()} for r in rows])
    return path


def pct(x):
    return None if x is None else 100 * x


def family_of(model: str) -> str:
    return model_spec_of(model).family


def _sort_key(family: str, gmacs: float, *rest):
    order = next((i for i, f in enumerate(FAMILY_ORDER) if family.startswith(f)), len(FAMILY_ORDER))
    return (order, family, gmacs, *rest)


@dataclass
class Section:
    markdown: list[str]
    csv: dict[str, list[dict]]
    plots: list[Path]


# ------------------------------------------------------------------------------------ efficiency table
def _model_rows(res: Results, cells=None) -> list[dict]:
    rows = []
    for cell, r in res.ok(cells):
        impls = r.get("block_impls") or []
        total = sum(b["count"] for b in impls)
        fused = sum(b["count"] for b in impls if b["impl"] in HIDDEN_ON_CHIP)
        name, _ = parse_model(cell["model"])
        timm = ref.TIMM_RTX3090.get(name) if cell["model"] == name else None
        family = family_of(cell["model"])
        rows.append({**{k: v for k, v in r.items() if k != "per_kernel"}, "model": cell["model"], "family": family,
                     "fused_blocks": f"{fused}/{total}" if total else "-", "latency_ms": r["infer_step_time"],
                     "eff_datasheet_pct": pct(r.get("eff_datasheet")), "eff_matmul_pct": pct(r.get("eff_matmul")),
                     "paper_range_pct": "-".join(f"{v:g}" for v in ref.paper_range(family) or ()) or None,
                     "timm_rtx3090_pct": 100 * timm.efficiency("fp16_acc16") if timm else None,
                     "timm_rtx3090_fp32acc_pct": 100 * timm.efficiency("fp16") if timm else None})
    order = {i: k for k, i in enumerate(impl_sorted(r["impl"] for r in rows))}
    return sorted(rows, key=lambda r: _sort_key(r["family"], r["infer_gmacs"], r["model"], order[r["impl"]],
                                                r["infer_batch_size"]))


def efficiency_table(res: Results, name: str) -> Section:
    rows = _model_rows(res)
    cols = [("model", "model"), ("family", "family"), ("res", "infer_img_size"), ("batch", "infer_batch_size"),
            ("params (M)", "param_count"), ("GMACs", "infer_gmacs"), ("impl", "impl"), ("fused blocks", "fused_blocks"),
            ("ms / batch", "latency_ms"), ("img/s", "infer_samples_per_sec"), ("TMAC/s", "achieved_tmacs"),
            ("E datasheet %", "eff_datasheet_pct"), ("E matmul %", "eff_matmul_pct"),
            ("paper E %", "paper_range_pct"), ("timm 3090 E %", "timm_rtx3090_pct")]
    device_col = _device_column(rows)
    cols[1:1] = device_col
    md = md_table(rows, cols)
    summary = []
    for family in dict.fromkeys(r["family"] for r in rows):
        for impl in impl_sorted(r["impl"] for r in rows if r["family"] == family):
            paper, timm = ref.paper_range(family), ref.timm_range(family)
            for device in sorted({r["device"] for r in rows if r["family"] == family and r["impl"] == impl}):
                effs = [r["eff_datasheet_pct"] for r in rows if r["family"] == family and r["impl"] == impl
                        and r["device"] == device and r["eff_datasheet_pct"] is not None]
                summary.append({"family": family, "impl": impl, "device": device, "models": len(effs),
                                "measured": f"{min(effs):.1f}-{max(effs):.1f}" if effs else None,
                                "paper": f"{paper[0]:g}-{paper[1]:g}" if paper else None,
                                "timm": f"{timm[0]:.1f}-{timm[1]:.1f}" if timm else None})
    md += ["Efficiency range per family (% of the datasheet peak; paper: its GPU; timm: RTX 3090, AMP fp16, "
           "against the fp16-accumulate tensor peak, the reading that matches the paper's ranges):", ""]
    md += md_table(summary, [("family", "family"), ("impl", "impl"), *device_col, ("models", "models"), ("measured E %", "measured"), ("paper E %", "paper"),
                      ("timm RTX 3090 E %", "timm")])
    plots = []
    if rows:
        models = {}
        for r in rows:
            label = f"{r['model']}\n({_device_key(r['device'])})" if device_col else r["model"]
            m = models.setdefault(label, {"label": label, "family": r["family"], "eff": {},
                                               "paper": ref.paper_range(r["family"]), "timm": r["timm_rtx3090_pct"]})
            if r["eff_datasheet_pct"] is not None:
                m["eff"][r["impl"]] = r["eff_datasheet_pct"]
        path = res.out / f"{name}.png"
        from experiments import plots as P

        P.efficiency_bars(list(models.values()), path, note=res.note,
                          title=f"Computational efficiency, {_device(res)}, batch {rows[0]['infer_batch_size']}, "
                                f"{rows[0]['dtype']}")
        plots.append(path)
        md = [f"![efficiency per model]({IMG}/{path.name})", ""] + md
    return Section(md, {name: rows}, plots)


# -------------------------------------------------------------------------------------- efficiency gap
def accuracy_for(res: Results, model: str) -> tuple[float | None, str | None]:
    """Top-1 (%) of a model reference: a recorded training workdir first, else the published figure."""
    recorded = res.manifest.get("accuracy", {}).get(model)
    if recorded:
        return recorded["top1"], recorded["source"]
    name, overrides = parse_model(model)
    if overrides:
        return None, None
    from convfirst.models import model_info

    info = model_info(name)
    return info["top1"], info["top1_source"]


def efficiency_gap(res: Results, name: str) -> Section:
    rows = _model_rows(res)
    models, table = {}, []
    for r in rows:
        top1, source = accuracy_for(res, r["model"])
        peak = r["peak_tmacs_datasheet"]
        ideal = r["infer_gmacs"] * 1e9 / (peak * 1e12) if peak else None
        measured = r["latency_ms"] * 1e-3 / r["infer_batch_size"]
        table.append({"model": r["model"], "device": r["device"], "family": r["family"], "impl": r["impl"],
                      "GMACs": r["infer_gmacs"], "top1": top1, "ideal_ms": ideal and 1e3 * ideal, "measured_ms": 1e3 * measured,
                      "gap_x": measured / ideal if ideal else None, "top1_source": source})
        if top1 is not None and ideal:
            m = models.setdefault(r["family"], {}).setdefault(
                r["model"], {"label": parse_model(r["model"])[0].split("_")[-1], "top1": top1, "ideal_s": ideal,
                             "measured_s": {}})
            m["measured_s"][r["impl"]] = measured
    md = md_table(table, [("model", "model"), *_device_column(table), ("family", "family"), ("impl", "impl"),
                          ("GMACs", "GMACs"), ("top-1 %", "top1"), ("ideal ms/img", "ideal_ms"),
                          ("measured ms/img", "measured_ms"), ("gap (1/E)", "gap_x")])
    sources = sorted({t["top1_source"] for t in table if t["top1_source"]})
    md += ["Accuracy sources: " + ("; ".join(sources) if sources else "none") + ".", ""]
    unplotted = sorted({t["model"] for t in table if t["top1"] is None})
    if unplotted:
        md += [f"Not plotted (no ImageNet accuracy; give one with `--accuracy MODEL=WORKDIR`): "
               f"{', '.join(unplotted)}.", ""]
    plots = []
    if models:
        from convfirst.cost.plots import efficiency_gap_figure, save_figure

        path = res.out / f"{name}.png"
        families = {f: list(ms.values()) for f, ms in models.items()}
        save_figure(efficiency_gap_figure(families, "datasheet peak", note=res.note,
                                          title=f"Efficiency gap, {_device(res)}, batch "
                                                f"{rows[0]['infer_batch_size']}, {rows[0]['dtype']}"), path)
        plots.append(path)
        md = [f"![efficiency gap]({IMG}/{path.name})", ""] + md
    return Section(md, {name: table}, plots)


# ---------------------------------------------------------------------------------------------- waterline
def waterline(res: Results, name: str) -> Section:
    from convfirst.cost.plots import save_waterline_plot
    from experiments import plots as P
    from experiments.measured_waterline import SplitUnavailable, measure

    measured, md, layer_rows, plots = [], [], [], []
    for cell, result in res.ok():
        try:
            measured.append((cell, measure(cell, result)))
        except SplitUnavailable as e:
            md += [f"- {cell['model']} {cell['impl']}: no split ({e})"]
    if md:
        md.append("")
    summaries = [mw.summary() for _, mw in measured]
    cols = [("model", "model"), ("impl", "impl"), ("measured ms", "measured_ms"), ("ideal ms", "ideal_ms"),
            ("recompute ms", "recompute_loss_ms"), ("memory-bound loss ms", "memory_bound_loss_ms"),
            ("kernel loss ms", "kernel_loss_ms"), ("E", "efficiency"), ("E bound", "efficiency_bound"),
            ("blocks alone ms", "block_sum_ms"), ("rest ms", "remainder_ms"), ("fused blocks", "fused_blocks"),
            ("fused kernels matched", "fused_kernels_matched")]
    devices = list(dict.fromkeys(s["device"] for s in summaries))
    device_col = _device_column(summaries)  # and xla vs auto are compared only within one device
    cols[2:2] = device_col
    md += ["Gap split per model and implementation (ms per batch; measured = ideal + recompute + memory-bound "
           "loss + kernel loss; the cost model follows the execution each block ran):", ""] + md_table(summaries, cols)
    fusion = []
    for model, device in dict.fromkeys((s["model"], s["device"]) for s in summaries):
        by = {s["impl"]: s for s in summaries if s["model"] == model and s["device"] == device}
        any_s = next(iter(by.values()))
        row = {"model": model, "device": device, "predicted_lw_ms": any_s["layerwise_waterline_ms"],
               "predicted_fused_ms": any_s["fused_waterline_ms"],
               "memory_loss_removed_ms": any_s["layerwise_memory_bound_loss_ms"] - any_s["fused_memory_bound_loss_ms"]}
        if "xla" in by and "auto" in by:
            row.update(xla_ms=by["xla"]["measured_ms"], auto_ms=by["auto"]["measured_ms"],
                       measured_speedup=by["xla"]["measured_ms"] / by["auto"]["measured_ms"])
        row["predicted_speedup"] = row["predicted_lw_ms"] / row["predicted_fused_ms"]
        fusion.append(row)
    md += ["What fusion buys: the cost model's bound with every block layer-wise vs every fusable block fused, "
           "against the measured xla and auto forwards:", ""]
    md += md_table(fusion, [("model", "model"), *device_col, ("waterline layer-wise ms", "predicted_lw_ms"),
                            ("waterline fused ms", "predicted_fused_ms"), ("predicted speed-up", "predicted_speedup"),
                            ("memory-bound loss removed ms", "memory_loss_removed_ms"), ("xla ms", "xla_ms"),
                            ("auto ms", "auto_ms"), ("measured speed-up", "measured_speedup")])
    for cell, mw in measured:
        for lt in mw.layers:
            layer_rows.append({"model": cell["model"], "impl": cell["impl"], "device": mw.device, "layer": lt.name,
                               "kind": lt.kind, "block": lt.block, "ran": lt.impl, "cost_model": lt.execution,
                               "measured_ms": 1e3 * lt.measured_s,
                               "isolated_ms": lt.isolated_s and 1e3 * lt.isolated_s,
                               "in_model_fused_ms": lt.in_model_s and 1e3 * lt.in_model_s,
                               "ideal_ms": 1e3 * lt.bound.ideal_s, "compute_ms": 1e3 * lt.bound.compute_s,
                               "memory_ms": 1e3 * lt.memory_s, "bound_ms": 1e3 * lt.bound.bound_s,
                               "kernel_loss_ms": 1e3 * (lt.measured_s - lt.bound.bound_s)})
    for model in dict.fromkeys(c["model"] for c, _ in measured):
        mine = [(c, mw) for c, mw in measured if c["model"] == model]
        md += [f"#### {model}", ""]
        blocks = {}
        for r in layer_rows:
            if r["model"] == model and r["block"]:
                b = blocks.setdefault((r["block"], r["impl"]), dict(r, count=0))
                b["count"] += 1
        md += md_table(list(blocks.values()), [
            ("block", "block"), ("impl", "impl"), *device_col, ("ran", "ran"), ("count", "count"), ("alone ms", "isolated_ms"),
            ("in forward ms", "in_model_fused_ms"), ("C/P ms", "compute_ms"), ("D/B ms", "memory_ms"),
            ("bound ms", "bound_ms"), ("kernel loss ms", "kernel_loss_ms")])
        path = res.out / f"{name}_{_file_safe(model)}.png"
        prefix = f"{FAKE_NOTE}: " if res.fake else ""
        save_waterline_plot({f"{c['impl']} (cost model: {mw.fused_blocks} block calls fused)": mw.waterline
                             for c, mw in mine}, path,
                            f"{prefix}{model}: measured per layer vs waterline, batch {mine[0][1].batch}, "
                            f"{mine[0][1].dtype}", max_ratio=_ratio_cap([mw for _, mw in mine]))
        plots.append(path)
        md += [f"![waterline {model}]({IMG}/{path.name})", ""]
    if summaries:
        path = res.out / f"{name}_gap_split.png"
        P.gap_split([dict(s, label=f"{s['model']} {s['impl']}") for s in summaries], path, note=res.note,
                    title=f"Where the time goes (per batch of {summaries[0]['batch']}), {', '.join(devices)}")
        plots.append(path)
        md = [f"![gap split]({IMG}/{path.name})", ""] + md
    return Section(md, {name: summaries, f"{name}_layers": layer_rows}, plots)


def _ratio_cap(measured) -> float:
    """y-axis cap of the waterline plots: 1.1 x the largest time / compute-time ratio among the layers
    that hold 95 % of the ideal time, so thin bars (stem, head) do not set the scale of the wide ones."""
    cap = 2.0
    for mw in measured:
        kernels = sorted((k for k in mw.waterline.kernels if k.ideal_s), key=lambda k: -k.ideal_s)
        total, covered = sum(k.ideal_s for k in kernels), 0.0
        for k in kernels:
            if covered >= 0.95 * total:
                break
            covered += k.ideal_s
            cap = max(cap, 1.1 * max(k.bound_s, k.measured_s) / k.ideal_s)
    return cap


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)


# ---------------------------------------------------------------------------------------------- ablations
def _block_rows(res: Results, cells) -> list[dict]:
    rows = []
    for cell, result in res.ok(cells):
        for b in result["blocks"]:
            requested = f"{cell['impl']}/{cell['bwd_impl']}" if "bwd_impl" in cell else cell["impl"]
            rows.append({**{k: v for k, v in b.items() if k != "per_kernel"}, "model": cell["model"],
                         "requested_impl": requested,
                         "ms": b.get("infer_step_time"), "eff_pct": pct(b.get("eff_datasheet"))})
    return rows


def _ablate_per_block(res, group, name, note) -> Section:
    from experiments import plots as P

    rows = _block_rows(res, res.group_cells(group))
    xla = {(r["model"], r["block"]): r["ms"] for r in rows if r["requested_impl"] in ("xla", "xla/xla") and r["ms"]}
    for r in rows:
        base = xla.get((r["model"], r["block"]))
        r["speedup_vs_xla"] = base / r["ms"] if base and r["ms"] else None
    md = md_table(rows, [("model", "model"), ("block", "block"), ("count", "block_count"), ("impl", "requested_impl"),
                         ("ran", "impl"), ("status", "status"), ("ms", "ms"), ("TMAC/s", "achieved_tmacs"),
                         ("E %", "eff_pct"), ("vs xla", "speedup_vs_xla")])
    blocks = list(dict.fromkeys(r["block"] for r in rows))
    impls = impl_sorted(r["requested_impl"] for r in rows)
    series = {i: [next((r["ms"] for r in rows if r["block"] == b and r["requested_impl"] == i and r["ms"]), None)
                  for b in blocks] for i in impls}
    path = res.out / f"{name}.png"
    P.grouped_bars([_short_block(b) for b in blocks], series, path, ylabel="ms per call", logy=True, note=note,
                   title=f"{group.name}: time per block call by implementation (missing bar: unsupported)")
    return Section(md, {name: rows}, [path])


def _short_block(label: str) -> str:
    return label.replace("convfirst_block_", "cf ").replace("mbconv_block_", "mb ")


def _ablate_variants(res, group, name, note) -> Section:
    from experiments import plots as P

    totals = []
    for cell, result in res.ok(res.group_cells(group)):
        ok = [b for b in result["blocks"] if b.get("status") == "ok"]
        ms = sum(b["infer_step_time"] * b["block_count"] for b in ok)
        gmacs = sum(b["infer_gmacs"] * b["block_count"] for b in ok)
        peak = ok[0]["peak_tmacs_datasheet"] if ok else None
        batch = ok[0]["infer_batch_size"] if ok else None
        totals.append({"variant": cell["model"], "impl": cell["impl"],
                       "blocks_ok": f"{len(ok)}/{len(result['blocks'])}", "block_gmacs": gmacs, "blocks_ms": ms,
                       "eff_pct": 100 * gmacs * 1e9 * batch / (ms * 1e-3 * peak * 1e12) if ms and peak else None})
    md = md_table(totals, [("variant", "variant"), ("impl", "impl"), ("blocks timed", "blocks_ok"),
                           ("block GMACs/img", "block_gmacs"), ("blocks ms/batch", "blocks_ms"), ("E %", "eff_pct")])
    variants = list(dict.fromkeys(t["variant"] for t in totals))
    series = {i: [next((t["blocks_ms"] for t in totals if t["variant"] == v and t["impl"] == i), None)
                  for v in variants] for i in impl_sorted(t["impl"] for t in totals)}
    path = res.out / f"{name}.png"
    P.grouped_bars(variants, series, path, ylabel="sum of block times per batch (ms)", note=note,
                   title=f"{group.name}: all residual blocks of the model (each distinct block timed alone x count)")
    return Section(md, {name: totals}, [path])


def _ablate_models(res, group, name, note) -> Section:
    from experiments import plots as P

    rows = _model_rows(res, res.group_cells(group))
    md = md_table(rows, [("model", "model"), ("impl", "impl"), ("batch", "infer_batch_size"), ("GMACs", "infer_gmacs"),
                         ("fused blocks", "fused_blocks"), ("ms / batch", "latency_ms"),
                         ("img/s", "infer_samples_per_sec"), ("E %", "eff_datasheet_pct")])
    path = res.out / f"{name}.png"
    if len({r["infer_batch_size"] for r in rows}) > 1:
        series = {}
        for r in rows:
            point = (r["infer_batch_size"], r["infer_samples_per_sec"])
            series.setdefault(f"{r['model']} {r['impl']}", []).append(point)
        P.lines(series, path, xlabel="batch", ylabel="img/s", logx=True, logy=True, note=note,
                title=f"{group.name}: throughput against batch size")
    else:
        models = list(dict.fromkeys(r["model"] for r in rows))
        series = {i: [next((r["latency_ms"] for r in rows if r["model"] == m and r["impl"] == i), None) for m in models]
                  for i in impl_sorted(r["impl"] for r in rows)}
        P.grouped_bars(models, series, path, ylabel="ms per batch", note=note, title=f"{group.name}: whole models")
    return Section(md, {name: rows}, [path])


def _ablate_tiles(res, group, name, note) -> Section:
    from experiments import plots as P

    rows, blocks = [], []
    for cell, result in res.ok(res.group_cells(group)):
        for b in result["blocks"]:
            cfgs = [c for c in b["configs"] if c.get("status") == "ok"]
            default = next((c["ms"] for c in cfgs if c["config"] == "default"), None)
            for c in b["configs"]:
                rows.append({"model": cell["model"], "block": b["block"], "config": json.dumps(c["config"]),
                             "status": c["status"], "ms": c.get("ms"),
                             "vs_default": default / c["ms"] if default and c.get("ms") else None})
            if b.get("status") != "ok":
                rows.append({"model": cell["model"], "block": b["block"], "status": b["status"]})
            if cfgs:
                blocks.append({"label": f"{cell['model']}: {_short_block(b['block'])}",
                               "configs": [{"ms": c["ms"], "default": c["config"] == "default"} for c in cfgs]})
    best = {}
    for r in rows:
        key = (r["model"], r["block"])
        if r.get("ms") is not None and (key not in best or r["ms"] < best[key]["ms"]):
            best[key] = r
    md = ["Fastest config per block (the full list is in the CSV):", ""]
    md += md_table(list(best.values()), [("model", "model"), ("block", "block"), ("config", "config"), ("ms", "ms"),
                                         ("speed-up vs default", "vs_default")])
    path = res.out / f"{name}.png"
    P.tile_sweep(blocks, path, note=note, title=f"{group.name}: fused-kernel tile configs")
    return Section(md, {name: rows}, [path])


ABLATION_VIEWS = {"impl": _ablate_per_block, "group_width": _ablate_variants, "expansion": _ablate_variants,
                  "group_width_mbconv": _ablate_models, "batch": _ablate_models, "tiles": _ablate_tiles}
KIND_VIEWS = {"bench_block": _ablate_per_block, "bench_block_train": _ablate_per_block, "bench_model": _ablate_models,
              "tile_sweep": _ablate_tiles}


def ablations(res: Results, name: str) -> Section:
    md, tables, plots = [], {}, []
    for group in res.config.groups:
        view = ABLATION_VIEWS.get(group.name) or KIND_VIEWS[group.kind]
        gname = f"{name}_{group.name}"
        if not res.ok(res.group_cells(group)):
            md += [f"#### {group.name}", "", "No finished cells.", ""]
            continue
        s = view(res, group, gname, res.note)
        md += [f"#### {group.name}", "", *[f"![{group.name}]({IMG}/{p.name})" for p in s.plots], "", *s.markdown]
        tables.update(s.csv)
        plots += s.plots
    return Section(md, tables, plots)


# -------------------------------------------------------------------------------------------- small scale
def small_scale(res: Results, name: str) -> Section:
    from experiments import plots as P

    rows = []
    for cell, r in res.ok():
        rows.append({**r, "mmacs": r["macs"] / 1e6, "params_k": r["params"] / 1e3,
                     "accuracy_pct": pct(r["val_accuracy"]), "train_accuracy_pct": pct(r.get("train_accuracy"))})
    rows.sort(key=lambda r: (r["family"], r["macs"]))
    label = res.config.get("label", "small scale")
    md = [f"**{label}.**", ""] + md_table(rows, [
        ("family", "family"), ("model", "model"), ("res", "resolution"), ("params (k)", "params_k"),
        ("MMACs/img", "mmacs"), ("steps", "steps"), ("batch", "batch"), ("test accuracy %", "accuracy_pct"),
        ("train accuracy %", "train_accuracy_pct")])
    md += ["Test accuracy: the held-out split, eval mode (BatchNorm running statistics). Train accuracy: mean over "
           "the last logging window, train mode (batch statistics, augmentation, dropout).", ""]
    if res.config.get("note"):
        md += [res.config.note, ""]
    plots = []
    points = {}
    for r in rows:
        if r["accuracy_pct"] is not None:
            points.setdefault(r["family"], []).append({"macs": r["macs"], "accuracy": r["accuracy_pct"],
                                                       "label": f"{r['resolution']}px"})
    if points:
        path = res.out / f"{name}.png"
        P.accuracy_vs_macs(points, path, title=f"Accuracy against MACs: {label}")
        plots.append(path)
        md = [f"![accuracy vs MACs]({IMG}/{path.name})", ""] + md
    return Section(md, {name: [{k: v for k, v in r.items() if k != "cell"} for r in rows]}, plots)


REPORTS = {"efficiency-table": efficiency_table, "efficiency-gap": efficiency_gap, "waterline": waterline,
           "ablations": ablations, "small-scale": small_scale}


# ----------------------------------------------------------------------------------------------- writing
def _device_column(rows: list[dict]) -> list[tuple[str, str]]:
    """A 'device' table column when the rows come from more than one GPU (a run completed on another
    part after the first was no longer lent), else none."""
    return [("device", "device")] if len({r["device"] for r in rows}) > 1 else []


def _device_key(device_kind: str) -> str:
    """Short name of a device kind for plot labels ('NVIDIA H200' -> 'h200')."""
    from experiments.measured_waterline import device_key

    try:
        return device_key(device_kind)
    except ValueError:
        return device_kind


def _device(res: Results) -> str:
    devices = sorted({r.get("env", {}).get("device", "?") for r in res.rows.values() if r.get("status") == "ok"})
    return ", ".join(devices) or "no device"


def environment_lines(res: Results) -> list[str]:
    envs = [r["env"] for r in res.rows.values() if r.get("status") == "ok" and "env" in r]
    if not envs:
        return []
    lines = []
    for key, label in (("device", "device"), ("driver", "driver"), ("jax_version", "jax"), ("commit", "commit"),
                       ("protocol", "timing protocol"), ("tuning_cache", "tuning cache")):
        values = sorted({str(e.get(key)) for e in envs if e.get(key) is not None})
        if values:
            lines.append(f"- {label}: {', '.join(values)}")
    results = [r["result"] for r in res.rows.values() if r.get("status") == "ok" and isinstance(r.get("result"), dict)]
    timed = [t for r in results for t in [r, r.get("model") or {}, *(r.get("blocks") or [])] if isinstance(t, dict)]
    methods = sorted({str(t["timing_method"]) for t in timed if t.get("timing_method")})
    if methods:
        lines.append(f"- timing method: {', '.join(methods)}")
    return lines


def commands(res: Results) -> list[str]:
    return [run["command"] for entry in res.manifest.get("experiments", {}).values() for run in entry.get("runs", [])]


def render(config, out) -> tuple[str, list[Path]]:
    """(Markdown with image links under IMG, files written) of `config`'s report over `out`."""
    res = collect(config, out)
    name = config.name.replace("-", "_")
    section = REPORTS[config.name](res, name)
    written = [write_csv(res.out / f"{t}.csv", rows) for t, rows in section.csv.items()] + section.plots
    md = [f"# {config.title}", ""]
    if res.fake:
        md += [f"> **{FAKE_BANNER}**", ""]
    cmds = commands(res)
    if cmds:
        md += ["Produced by (in order, resuming):", "", "```", *dict.fromkeys(cmds), "```", ""]
    md += environment_lines(res) + [""]
    md += [f"Cells: {len(res.cells)}, finished {len(res.rows) - len(res.failed)}, failed {len(res.failed)}, "
           f"not run {len(res.missing)}.", ""]
    md += section.markdown
    if res.failed:
        md += ["Failed cells:", ""] + [f"- `{r['id']}`: {r['status']}: {str(r.get('error', ''))[:300]}"
                                       for r in res.failed] + [""]
    if res.missing:
        md += ["Not run yet (rerun the command to continue):", ""] + [f"- `{cell_id(c)}`" for c in res.missing] + [""]
    return "\n".join(md), written


def write_report(config, out, console=None) -> tuple[str, list[Path]]:
    """Write DIR/<name>.md, the CSV tables and the PNG plots of `config` over the results in `out`;
    returns the Markdown (image links under IMG) and the files written."""
    text, written = render(config, out)
    path = Path(out) / f"{config.name.replace('-', '_')}.md"
    path.write_text(text.replace(IMG, "."))
    if console is not None and FAKE_BANNER in text:
        console.print(f"[bold red]{FAKE_BANNER}[/bold red]")
    return text, [path] + written


def record_accuracy(out, experiment: str, items: list[str]) -> None:
    """`MODEL=WORKDIR` -> manifest['accuracy'][MODEL]: the workdir's last val_accuracy, in percent."""
    from train.metrics import read_metrics

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    doc = json.loads(path.read_text()) if path.exists() else {"experiments": {}}
    for item in items:
        model, sep, workdir = item.rpartition("=")
        if not sep or not model:
            raise ValueError(f"--accuracy expects MODEL=WORKDIR, got {item!r}")
        evals = [r for r in read_metrics(workdir) if "val_accuracy" in r]
        if not evals:
            raise ValueError(f"--accuracy {item}: no val_accuracy in {Path(workdir) / 'metrics.jsonl'}")
        doc.setdefault("accuracy", {})[model] = {
            "top1": 100 * evals[-1]["val_accuracy"],
            "source": f"training workdir {workdir} (val_accuracy at step {evals[-1].get('step')})"}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- docs
def run_command(name: str) -> str:
    """The run command quoted in an experiment config's docstring."""
    text = (CONFIG_DIR / EXPERIMENTS[name]).read_text()
    return next(line.strip() for line in text.splitlines() if line.strip().startswith("convfirst reproduce"))


def _arg_for(name: str, manifest: dict) -> str:
    """The config argument the directory was run with: this experiment's, else the latest run's."""
    entries = manifest.get("experiments", {})
    if name in entries:
        return entries[name].get("arg", "")
    latest = max(entries.values(), key=lambda e: e["runs"][-1]["started"], default=None) if entries else None
    return latest.get("arg", "") if latest else ""


METHODS = """\
## Definitions and method

- MACs C per image from the model specs (1 MAC = 1 multiply-add; never FLOPs); peak P = dense tensor peak of
  the device at the precision used (convfirst/cost/hardware.py, with sources), also a measured 8192^3 matmul
  peak. Ideal latency C/P; computational efficiency E = N C / (T P) for a batch of N images in time T.
- Timing (pallas_kernels/timing.py): compile and warm up, inputs rotated over buffers larger than 4x L2,
  CUPTI kernel time per call (median; launch gaps excluded) and host wall-clock. Synthetic normal inputs,
  NHWC, inference with BatchNorm folded. Every cell runs in a fresh process (`experiments/run.py`).
- Measured waterline (reconstructed; the paper's exact definition is not public): the whole forward T_model
  from `bench_model`; each distinct residual block timed alone by `bench_block` at the implementation the
  model runs it with, every occurrence getting that time; stem, downsampling and head layers share the
  remainder T_model - sum(blocks) in proportion to their cost-model bounds (if the remainder is negative,
  they get 0 and the block times are scaled to sum to T_model). Per layer the cost model gives compute C/P,
  memory D/B and the bound L = sum_i max(C_i/P, D_i/B) over the kernels of the execution the block ran
  (block-fused when it ran pallas_fused or mosaic_mlp -- the latter's conv-output round trip, 2C per pixel,
  is not in that bound -- else layer-wise). T_model = ideal + recompute + memory-bound
  loss sum_i max(0, D_i/B - C_i/P) (fusion removes it) + kernel loss sum (T - L) (better kernels remove it).
  The raw CUPTI kernel list of one forward is kept; kernels named `convfirst_fused*`/`mbconv_fused*`
  (pallas_fused) and `body_mosaic_gpu*` (mosaic_mlp's MLP kernel) are matched in order to the blocks
  that ran fused ("in forward" column).
- Impl `xla` is the reference graph with float32 intermediates between XLA's kernels (TF32 grouped
  conv, float32 hidden activation); `xla_native` keeps them in bf16/fp16 as a mixed-precision Flax
  model does and is the stronger XLA baseline (docs/kernels.md, "The XLA baseline").
- A table whose cells ran on two GPUs (one completed after the first was no longer available) names the
  device per row; implementations are compared only within one device. A GPU without a tuning cache of
  its own uses one tuned on a part of the same chip (H200 <- H100), shown as "tuning cache".
- XLA's convolution autotuner varies between processes: in about one in twenty it compiled a 16-bit
  depthwise convolution to cuDNN's FFT or fp32 engines, 3-15x slower. Such cells (kernel names in the
  CUPTI list, `experiments/outliers.py`) are recorded as `outlier`, rerun in a fresh process and left out
  of the tables. Milder variance without that signature remains possible (one waterline block: 0.12 vs
  0.66 ms in two processes).
- Rows timed with `--timing fake` (CPU tests) are synthetic: every table and plot that shows them carries a
  FAKE TIMING banner. Small-scale results are CPU training runs, not timings.
"""


def write_docs(root: Path = RESULTS_ROOT, docs: Path = DOCS) -> Path:
    """docs/results.md from the committed result directories under `root` (reports regenerated there)."""
    md = ["# Results", "",
          "Generated by `python -m experiments.report --docs` from the committed runs under "
          f"`{os.path.relpath(root, REPO)}/`; do not edit by hand. Each section names the commands that "
          "produced it; rerunning them resumes, and `--report-only` redraws tables and plots.", "",
          "Commands (each experiment's config in `experiments/configs/reproduce/` documents its variants, e.g. "
          "`:quick`, `:cpu`):", "", "```", *[run_command(n) for n in EXPERIMENTS], "```", "", METHODS,
          "## Sources", "", *[f"- {s}" for s in ref.sources()], ""]
    for name, dirname in DOCS_SECTIONS:
        out = root / dirname
        md += [f"## {name}", ""]
        if not (out / "results.jsonl").exists():
            md += [f"Not run yet. Command: `{run_command(name)}`", ""]
            continue
        manifest = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).exists() else {}
        arg = _arg_for(name, manifest)
        config = load(config_spec(f"{name}:{arg}" if arg else name))
        text, _ = write_report(config, out)
        body = text.split("\n", 2)[2]  # drop the report's own title: the section heading replaces it
        md += [f"Results directory: `{os.path.relpath(out, REPO)}/`" + (f" (config argument `{arg}`)" if arg else ""),
               "", body.replace(IMG, os.path.relpath(out, docs.parent)).replace("\n#### ", "\n### "), ""]
    docs.write_text("\n".join(md).rstrip() + "\n")
    return docs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.splitlines()[0])
    p.add_argument("--docs", action="store_true", help="regenerate docs/results.md from benchmarks/results/")
    p.add_argument("--experiment", metavar="NAME[:ARG]", help=f"one of {', '.join(EXPERIMENTS)}")
    p.add_argument("dir", nargs="?", help="run directory (with --experiment)")
    p.add_argument("--root", default=str(RESULTS_ROOT), help="committed results (with --docs)")
    p.add_argument("--out", default=str(DOCS), help="where --docs writes")
    args = p.parse_args(argv)
    try:
        if args.docs:
            print(write_docs(Path(args.root), Path(args.out)))
        elif args.experiment and args.dir:
            for path in write_report(load(config_spec(args.experiment)), args.dir)[1]:
                print(path)
        else:
            p.error("give --docs, or --experiment NAME and a run directory")
    except (ValueError, FileNotFoundError) as e:
        print(f"experiments.report: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
