"""Plots of the experiment reports (PNG, matplotlib Agg). Each function takes plain data and a path.

`note` (e.g. the fake-timing warning) is printed in red above every figure that carries one.
"""
from __future__ import annotations

import textwrap

from convfirst.cost.plots import save_figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


IMPL_ORDER = ("xla", "xla_native", "pallas_layerwise", "pallas_fused", "mosaic_mlp", "auto")


def impl_sorted(impls) -> list[str]:
    """Implementations in a fixed reading order: baseline first."""
    return sorted(set(impls), key=lambda i: (IMPL_ORDER.index(i) if i in IMPL_ORDER else len(IMPL_ORDER), i))


def _finish(fig, path, title: str, note: str) -> None:
    if title:
        width = int(fig.get_figwidth() * 14)
        fig.suptitle(textwrap.fill(title, width), fontsize=9, y=0.955 if note else 0.99)
    if note:
        fig.text(0.5, 0.995, note, color="red", ha="center", va="top", fontsize=10, weight="bold")
    fig.tight_layout(rect=(0, 0, 1, 0.92 if note else 0.95))
    save_figure(fig, path)


def efficiency_bars(models: list[dict], path, *, title: str = "", note: str = "") -> None:
    """Efficiency (% of the datasheet peak) per model and implementation; the paper's range of each
    family as a shaded band over its models, timm's RTX 3090 figure as a black tick.

    models: [{'label', 'family', 'eff': {impl: percent}, 'paper': (lo, hi) | None, 'timm': percent | None}]
    """
    plt = _plt()
    impls = impl_sorted(i for m in models for i in m["eff"])
    width = 0.8 / max(len(impls), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(models) + 2), 4.8))
    for j, impl in enumerate(impls):
        xs = [i + (j - (len(impls) - 1) / 2) * width for i, m in enumerate(models) if impl in m["eff"]]
        ax.bar(xs, [m["eff"][impl] for m in models if impl in m["eff"]], width, label=impl)
    shown = set()
    for i, m in enumerate(models):
        if m.get("paper"):
            lo, hi = m["paper"]
            label = "paper's range (family)" if "paper" not in shown else None
            ax.fill_between([i - 0.45, i + 0.45], lo, hi, color="grey", alpha=0.25, linewidth=0, label=label)
            shown.add("paper")
        if m.get("timm") is not None:
            label = "timm RTX 3090 (fp16-acc peak)" if "timm" not in shown else None
            ax.hlines(m["timm"], i - 0.4, i + 0.4, color="black", linewidth=2, label=label)
            shown.add("timm")
    ax.set_xticks(range(len(models)), [m["label"] for m in models], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("computational efficiency (% of datasheet peak)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _finish(fig, path, title, note)


def grouped_bars(categories: list[str], series: dict[str, list[float | None]], path, *, ylabel: str,
                 title: str = "", note: str = "", logy: bool = False) -> None:
    """One group of bars per category, one bar per series (None: no bar)."""
    plt = _plt()
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(categories) * max(1, len(series) / 2) + 2), 4.8))
    for j, (name, values) in enumerate(series.items()):
        pts = [(i + (j - (len(series) - 1) / 2) * width, v) for i, v in enumerate(values) if v is not None]
        if pts:
            ax.bar(*zip(*pts), width, label=name)
    ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _finish(fig, path, title, note)


def lines(series: dict[str, list[tuple[float, float]]], path, *, xlabel: str, ylabel: str, title: str = "",
          note: str = "", logx: bool = False, logy: bool = False) -> None:
    """One marked line per series of (x, y) points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, pts in series.items():
        pts = sorted(pts)
        ax.plot(*zip(*pts), marker="o", label=name)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _finish(fig, path, title, note)


def gap_split(entries: list[dict], path, *, title: str = "", note: str = "") -> None:
    """Stacked bar per (model, impl): ideal + recompute + memory-bound loss + kernel loss = measured.

    entries: [{'label', 'ideal_ms', 'recompute_loss_ms', 'memory_bound_loss_ms', 'kernel_loss_ms'}]
    """
    plt = _plt()
    parts = [("ideal_ms", "ideal C/P", "#4C72B0"), ("recompute_loss_ms", "recompute", "#8172B2"),
             ("memory_bound_loss_ms", "memory-bound loss (fusion removes)", "#DD8452"),
             ("kernel_loss_ms", "kernel loss (better kernels remove)", "#C44E52")]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(entries) + 2), 4.8))
    xs = range(len(entries))
    pos, neg = [0.0] * len(entries), [0.0] * len(entries)
    for key, label, color in parts:
        vals = [e[key] for e in entries]
        bottoms = [p if v >= 0 else n for v, p, n in zip(vals, pos, neg)]
        ax.bar(xs, vals, 0.6, bottom=bottoms, color=color, label=label)
        pos = [p + max(v, 0) for v, p in zip(vals, pos)]
        neg = [n + min(v, 0) for v, n in zip(vals, neg)]
    ax.set_xticks(list(xs), [e["label"] for e in entries], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("time per batch (ms)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _finish(fig, path, title, note)


def accuracy_vs_macs(families: dict[str, list[dict]], path, *, title: str = "", note: str = "") -> None:
    """Accuracy against MACs per family; points {'macs', 'accuracy', 'label'} joined in MAC order."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for family, pts in families.items():
        pts = sorted(pts, key=lambda p: p["macs"])
        line, = ax.plot([p["macs"] / 1e6 for p in pts], [p["accuracy"] for p in pts], marker="o", label=family)
        for p in pts:
            ax.annotate(p["label"], (p["macs"] / 1e6, p["accuracy"]), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("MMACs per image (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _finish(fig, path, title, note)


def tile_sweep(blocks: list[dict], path, *, title: str = "", note: str = "") -> None:
    """Per block, the time of every tile config (sorted, fastest left); the default config in orange.

    blocks: [{'label', 'configs': [{'name', 'ms', 'default': bool}]}]
    """
    plt = _plt()
    n = max(len(blocks), 1)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.4 * n + 0.8), squeeze=False)
    for ax, b in zip(axes[:, 0], blocks):
        cfgs = sorted(b["configs"], key=lambda c: c["ms"])
        ax.bar(range(len(cfgs)), [c["ms"] for c in cfgs],
               color=["#DD8452" if c["default"] else "#4C72B0" for c in cfgs])
        ax.set_title(b["label"], fontsize=8, loc="left")
        ax.set_ylabel("ms", fontsize=8)
        ax.set_xticks(range(len(cfgs)), [str(i) for i in range(len(cfgs))], fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("tile config, fastest first (orange: the default the model runs; table lists them)")
    _finish(fig, path, title, note)
