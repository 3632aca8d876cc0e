"""`convfirst models`: registered models with resolution, params, GMACs and published ImageNet top-1.

Params and GMACs come from the analytic cost model on the model spec (1 MAC = 1 multiply-add,
padding taps counted: the paper's and timm's convention), at the model's native resolution.
"""
from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name filter, e.g. 'convnext*'")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def model_rows(pattern: str = "*") -> list[dict]:
    """One dict per registered model matching `pattern`."""
    from convfirst.cost.layers import layer_costs
    from convfirst.models import list_models, model_info, model_spec

    rows = []
    for name in list_models(pattern):
        spec, info = model_spec(name), model_info(name)
        costs = layer_costs(spec)
        rows.append({"name": name, "family": info["family"], "resolution": spec.resolution,
                     "params": sum(c.params for c in costs), "gmacs": sum(c.macs for c in costs) / 1e9,
                     "top1": info.get("top1"), "top1_source": info.get("top1_source")})
    return rows


def main(args) -> int:
    rows = model_rows(args.pattern)
    if not rows:
        raise ValueError(f"no registered model matches {args.pattern!r}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    from convfirst.commands.output import console

    table = Table(title="ConvFirst-JAX models (GMACs per image at native resolution; 1 MAC = 1 multiply-add)")
    for col, justify in [("model", "left"), ("family", "left"), ("res", "right"), ("params (M)", "right"),
                         ("GMACs", "right"), ("top-1", "right"), ("top-1 source", "left")]:
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(r["name"], r["family"], str(r["resolution"]), f"{r['params'] / 1e6:.2f}", f"{r['gmacs']:.3f}",
                      "-" if r["top1"] is None else f"{r['top1']:.2f}", r["top1_source"] or "-")
    console().print(table)
    return 0
