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


def waterline_figure(waterlines: dict[str, Waterline], title: str = ""):
    """A matplotlib figure with one panel per execution (e.g. {'layer-wise': w1, 'block-fused': w2})."""
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
            top, x = max(top, r_bound), x + width
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


def save_waterline_plot(waterlines: dict[str, Waterline], path, title: str = "") -> None:
    """Write the waterline figure as PNG."""
    import matplotlib.pyplot as plt

    fig = waterline_figure(waterlines, title)
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)
