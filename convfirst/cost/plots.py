"""Waterline plot (reconstructed; paper.md 1.3): one bar per kernel along the ideal-compute-time axis.

A bar is as wide as its kernel's useful compute time C_i/P and as tall as its bound L_i in units of
that time, so its area is L_i. The line at height 1 is the waterline: everything above it is time
lost, split into recompute, memory-bound loss and (when measured times are given) kernel loss.
Kernels without MACs (norms, pooling) have no width; their time is added to the preceding kernel.
"""
from __future__ import annotations

from convfirst.cost.waterline import LABEL, Waterline

COLORS = {"compute": "#4C72B0", "recompute": "#8172B2", "memory": "#DD8452"}


def _segments(w: Waterline):
    """(ideal, compute, bound, measured) per kernel with MACs, zero-MAC kernels merged leftwards."""
    segs, pending = [], [0.0, 0.0, 0.0, 0.0]
    for k in w.kernels:
        t = [k.ideal_s, k.compute_s, k.bound_s, k.measured_s or 0.0]
        if k.ideal_s > 0:
            segs.append([a + b for a, b in zip(t, pending)])
            pending = [0.0] * 4
        elif segs:
            segs[-1] = [a + b for a, b in zip(segs[-1], t)]
        else:  # leading zero-MAC kernels: carry into the first kernel with MACs
            pending = [a + b for a, b in zip(pending, t)]
    return segs


def waterline_figure(waterlines: dict[str, Waterline], title: str = "", max_ratio: float | None = None):
    """A matplotlib figure with one panel per execution (e.g. {'layer-wise': w1, 'block-fused': w2}).

    `max_ratio` caps the y-axis (time / compute time) so that one extreme kernel (e.g. a classifier that
    reads far more weights than it computes) does not flatten the rest; capped bars get their value printed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(len(waterlines), 1, figsize=(11, 3.2 * len(waterlines)), sharex=True, squeeze=False)
    for ax, (name, w) in zip(axes[:, 0], waterlines.items()):
        x, top = 0.0, 1.0
        for ideal, compute, bound, measured in _segments(w):
            width = ideal * 1e3
            r_compute, r_bound = compute / ideal, bound / ideal
            ax.bar(x, 1.0, width, align="edge", color=COLORS["compute"], linewidth=0)
            ax.bar(x, r_compute - 1.0, width, bottom=1.0, align="edge", color=COLORS["recompute"], linewidth=0)
            ax.bar(x, r_bound - r_compute, width, bottom=r_compute, align="edge", color=COLORS["memory"], linewidth=0)
            if w.measured:
                ax.hlines(measured / ideal, x, x + width, color="black", linewidth=1.2)
                top = max(top, measured / ideal)
            if max_ratio is not None and max(r_bound, measured / ideal) > max_ratio:
                ax.text(x + width / 2, max_ratio, f"{max(r_bound, measured / ideal):.0f}x", ha="center",
                        va="top", fontsize=7, rotation=90)
            top, x = max(top, r_bound), x + width
        top = min(top, max_ratio) if max_ratio is not None else top
        ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
        summary = f"{name}: ideal {w.ideal_s * 1e3:.3g} ms, {LABEL} {w.waterline_s * 1e3:.3g} ms " \
                  f"(efficiency <= {w.efficiency_bound:.0%})"
        if w.measured:
            summary += f", measured {w.measured_s * 1e3:.3g} ms ({w.measured_efficiency:.0%})"
        ax.set_title(summary, fontsize=9, loc="left")
        ax.set_ylim(0, top * 1.08)
        ax.set_ylabel("time / compute time")
    handles = [Patch(color=COLORS["compute"], label="useful compute C/P"),
               Patch(color=COLORS["recompute"], label="recompute"),
               Patch(color=COLORS["memory"], label="memory-bound loss (D/B - C/P)"),
               Line2D([], [], color="black", linestyle="--", label="waterline: compute time")]
    if any(w.measured for w in waterlines.values()):
        handles.append(Line2D([], [], color="black", label="measured T_i"))
    axes[-1, 0].set_xlabel("cumulative ideal compute time (ms); bar area = kernel time bound")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=len(handles), frameon=False)
    return fig


def save_waterline_plot(waterlines: dict[str, Waterline], path, title: str = "",
                        max_ratio: float | None = None) -> None:
    """Write the waterline figure as PNG."""
    import matplotlib.pyplot as plt

    fig = waterline_figure(waterlines, title, max_ratio)
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)


def efficiency_gap_figure(families: dict[str, list[dict]], peak_label: str, title: str = "", note: str = ""):
    """Efficiency-gap plot (paper.md 1.2): accuracy against latency per image on a log axis.

    `families` maps a family to its models, each {'label', 'top1', 'ideal_s', 'measured_s': {impl: s}}.
    Per family one dotted curve at the ideal latency C/P (100 % efficiency: the model-efficiency curve)
    and one solid curve per implementation at the measured latency; the horizontal distance between
    them is log(1/E). `note` is printed in red above the axes (e.g. a fake-timing warning).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = [("-", "s"), ("--", "^"), ("-.", "D"), (":", "v")]
    for color, (family, models) in zip(colors, families.items()):
        models = sorted(models, key=lambda m: m["ideal_s"])
        ax.plot([m["ideal_s"] * 1e3 for m in models], [m["top1"] for m in models], ":", marker="o", mfc="none",
                color=color, label=f"{family}: ideal C/P")
        impls = sorted({i for m in models for i in m["measured_s"]})
        for j, ((style, marker), impl) in enumerate(zip(styles, impls)):  # shrinking markers: equal times stay visible
            pts = [(m["measured_s"][impl] * 1e3, m["top1"]) for m in models if impl in m["measured_s"]]
            ax.plot(*zip(*pts), style, marker=marker, markersize=8 - 2 * j, color=color,
                    label=f"{family}: measured ({impl})")
        for m in models:  # the gap itself: ideal to slowest measured latency
            ax.plot([m["ideal_s"] * 1e3, max(m["measured_s"].values()) * 1e3], [m["top1"]] * 2, color=color,
                    alpha=0.25, linewidth=3, solid_capstyle="butt")
            ax.annotate(m["label"], (m["ideal_s"] * 1e3, m["top1"]), textcoords="offset points", xytext=(-4, 5),
                        fontsize=7, color=color, ha="right")
    ax.set_xscale("log")
    ax.set_xlabel(f"latency per image (ms, log scale); ideal = MACs / {peak_label}")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    if note:
        fig.text(0.5, 0.995, note, color="red", ha="center", va="top", fontsize=10, weight="bold")
    fig.tight_layout(rect=(0, 0, 1, 0.96 if note else 1))
    return fig


def save_figure(fig, path) -> None:
    """Write a figure as PNG and release it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)
