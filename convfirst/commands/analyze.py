"""`convfirst analyze`: per-block cost, layer-wise vs block-fused DRAM traffic and waterline of a model.

Analytic, from the model spec: runs on CPU with no data and no GPU. Times are bounds for a batch on
the chosen device (dense peak at the chosen precision, DRAM bandwidth from hardware.py).
"""
from __future__ import annotations

import json

from convfirst.cost.hardware import DEVICES, DTYPES

DEFAULT_MODEL = "convfirst_tiny"


def add_arguments(parser) -> None:
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"registered model (default {DEFAULT_MODEL})")
    parser.add_argument("--device", default="h100", help=f"one of: {', '.join(DEVICES)} (default h100)")
    parser.add_argument("--batch", type=int, default=128, help="images per batch (default 128)")
    parser.add_argument("--dtype", default="bf16", help=f"one of: {', '.join(DTYPES)} (default bf16)")
    parser.add_argument("--resolution", type=int, default=None, help="image size (default: the model's own)")
    parser.add_argument("--tile", default=None, metavar="HxW",
                        help="fused-kernel output tile, e.g. 8x8 (default: the largest of 8x8..1x1 that fits on chip)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument("--plot", default=None, metavar="PATH", help="write the waterline plot as PNG")


def _parse_tile(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--tile must look like 8x8, got {text!r}") from None
    return h, w


def resolve_spec(name: str, resolution: int | None = None):
    """The registered spec of `name` (at `resolution` if given); unknown names list the valid ones."""
    from convfirst.models import list_models, model_spec

    names = list_models()
    if name not in names:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(names)}")
    spec = model_spec(name)
    return spec.replace(resolution=resolution) if resolution else spec


def main(args) -> int:
    from convfirst.cost.analysis import analyze

    spec = resolve_spec(args.model, args.resolution)
    result = analyze(spec, args.device, args.batch, args.dtype, _parse_tile(args.tile))
    if args.plot:
        from convfirst.cost.plots import save_waterline_plot

        title = f"{spec.name} @{spec.resolution}, {result.device.name}, {args.dtype}, batch {args.batch}"
        save_waterline_plot({"layer-wise": result.layerwise, "block-fused": result.fused}, args.plot, title)
    if args.json:
        doc = result.to_dict()
        if args.plot:
            doc["plot"] = str(args.plot)
        print(json.dumps(doc, indent=2))
    else:
        _print_report(result, args.plot)
    return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _print_report(result, plot) -> None:
    from rich.table import Table

    from convfirst.commands.output import console

    d = result.to_dict()
    dev, batch = d["device"], d["batch"]
    out = console()
    table = Table(title=f"{d['model']} @{d['resolution']}: per-layer cost, batch {batch}, {d['dtype']} on "
                        f"{dev['name']} (ridge {dev['ridge_macs_per_byte']:.0f} MAC/B)")
    for col in ["layer", "output", "MMACs/img", "params", "MB layer-wise", "MB fused", "MAC/B lw", "MAC/B fused",
                "bound lw", "bound fused", "tile"]:
        table.add_column(col, justify="left" if col in ("layer", "output", "tile") else "right")
    for b in d["blocks"]:
        lw, fu = b["layerwise"], b["fused"]
        table.add_row(b["name"], "x".join(map(str, b["out_shape"])), f"{b['macs'] / 1e6:.1f}", f"{b['params']:,}",
                      f"{lw['dram_bytes'] / 1e6:.1f}", f"{fu['dram_bytes'] / 1e6:.1f}", f"{lw['intensity']:.1f}",
                      f"{fu['intensity']:.1f}", lw["bound"], fu["bound"],
                      b["tile"]["tile"] if "tile" in b else "-")
    out.print(table)

    lw, fu = d["layerwise"], d["fused"]
    summary = Table(title="summary")
    for col in ["", "layer-wise", "block-fused"]:
        summary.add_column(col, justify="left" if not col else "right")
    rows = [("kernels (memory-bound)", f"{lw['num_kernels']} ({lw['memory_bound_kernels']})",
             f"{fu['num_kernels']} ({fu['memory_bound_kernels']})"),
            ("DRAM traffic", f"{lw['dram_bytes'] / 1e9:.2f} GB", f"{fu['dram_bytes'] / 1e9:.2f} GB"),
            ("intensity", f"{lw['intensity']:.1f} MAC/B", f"{fu['intensity']:.1f} MAC/B"),
            ("ideal latency C/P", _ms(lw["ideal_s"]), _ms(fu["ideal_s"])),
            ("memory-bound loss", _ms(lw["memory_bound_loss_s"]), _ms(fu["memory_bound_loss_s"])),
            ("recompute loss", _ms(lw["recompute_loss_s"]), _ms(fu["recompute_loss_s"])),
            ("waterline", _ms(lw["waterline_s"]), _ms(fu["waterline_s"])),
            ("roofline (optimistic)", _ms(lw["roofline_s"]), _ms(fu["roofline_s"])),
            ("predicted efficiency <=", f"{lw['efficiency_bound']:.1%}", f"{fu['efficiency_bound']:.1%}"),
            ("throughput <=", f"{batch / lw['waterline_s']:,.0f} img/s", f"{batch / fu['waterline_s']:,.0f} img/s")]
    tiles = [b["tile"] for b in d["blocks"] if "tile" in b]
    if tiles:  # weights re-read per tile from L2: outside the DRAM waterline, shown so it is not forgotten
        rows.append(("L2 weight re-reads (not in waterline)", "-",
                     f"{sum(t['l2_weight_bytes'] for t in tiles) / 1e9:.2f} GB, "
                     f">= {min(t['l2_weight_intensity'] for t in tiles):.0f} MAC/B"))
    for row in rows:
        summary.add_row(*row)
    out.print(summary)
    out.print("waterline (reconstructed) = sum over kernels of max(MACs / peak, DRAM bytes / bandwidth); "
              "efficiency <= ideal / waterline")
    out.print(f"{d['params']:,} params, {d['gmacs']:.3f} GMACs/img; {dev['name']} {d['dtype']}: "
              f"{dev['peak_macs_per_s'] / 1e12:.1f} TMAC/s dense, {dev['dram_bytes_per_s'] / 1e12:.2f} TB/s, "
              f"ridge {dev['ridge_macs_per_byte']:.1f} MAC/B ({dev['source']})")
    if plot:
        out.print(f"waterline plot: {plot}")
