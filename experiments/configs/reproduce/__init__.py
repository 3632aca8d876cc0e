"""Experiment configs for `convfirst reproduce NAME` (one file per experiment, `get_config(arg)`).

An experiment config holds its name, a title, the report that turns its results into tables and
plots, a per-cell time limit and `groups` of cells (see experiments/cells.py). These builders keep
the files short and their keys uniform.
"""
from __future__ import annotations

import ml_collections


def experiment(name: str, title: str, *, groups, cell_timeout_s: int = 300, **extra) -> ml_collections.ConfigDict:
    """`name` is the NAME of `convfirst reproduce NAME` and selects the report."""
    c = ml_collections.ConfigDict()
    c.name = name
    c.title = title
    c.cell_timeout_s = cell_timeout_s
    c.groups = tuple(groups)
    for key, value in extra.items():
        c[key] = value
    return c


def group(name: str, kind: str, sweep: dict, **params) -> ml_collections.ConfigDict:
    """Cells of one `kind`: the product of the `sweep` axes (first axis outermost) with fixed `params`."""
    g = ml_collections.ConfigDict()
    g.name = name
    g.kind = kind
    g.axes = tuple(sweep)
    g.sweep = ml_collections.ConfigDict({k: tuple(v) for k, v in sweep.items()})
    g.params = ml_collections.ConfigDict(params)
    return g
