"""Cells: the units an experiment runs, one fresh process each, named by their parameters.

An experiment config has `groups`; each group has a cell `kind`, sweep axes (outermost first) and
fixed params. A cell is the flat dict {kind, axis values..., params..., [timing]}; its id lists every
parameter, so a results file can be resumed, shared between experiments whose cells coincide (the
efficiency gap reuses the efficiency table's measurements) and never confuses fake with real timing.

Model references may carry overrides for the model's spec builder: "convfirst_pico:kernel_size=7,norm=layer".
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import re

# kind -> required params (beyond kind); timed kinds also carry `timing` ('real' or 'fake')
KINDS = {
    "bench_model": ("model", "impl", "batch", "dtype", "warmup", "iters"),
    "bench_block": ("model", "impl", "batch", "dtype", "warmup", "iters"),
    "bench_block_train": ("model", "impl", "bwd_impl", "batch", "dtype", "warmup", "iters"),
    "waterline": ("model", "impl", "batch", "dtype", "warmup", "iters"),
    "tile_sweep": ("model", "impl", "batch", "dtype", "warmup", "iters", "max_configs"),
    "train_small": ("model", "resolution", "steps", "batch", "seed", "dataset"),
}
TIMED = ("bench_model", "bench_block", "bench_block_train", "waterline", "tile_sweep")
TIMINGS = ("real", "fake")


def parse_model(ref: str) -> tuple[str, dict]:
    """'name:key=value,...' -> (name, overrides); values are Python literals or bare strings."""
    name, _, rest = ref.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, eq, text = item.partition("=")
        if not eq:
            raise ValueError(f"model override {item!r} in {ref!r} needs a value (key=value)")
        try:
            overrides[key.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            overrides[key.strip()] = text.strip()
    return name, overrides


def model_spec_of(ref: str):
    """The ModelSpec of a model reference (overrides applied)."""
    from convfirst.models import model_spec

    name, overrides = parse_model(ref)
    return model_spec(name, **overrides)


def expand(config, timing: str) -> list[dict]:
    """All cells of an experiment config, in run order (groups in order, first axis outermost); a cell
    shared by two groups runs once."""
    cells = {}
    for group in config.groups:
        for cell in expand_group(group, timing):
            cells.setdefault(cell_id(cell), cell)
    return list(cells.values())


def expand_group(group, timing: str) -> list[dict]:
    """The cells of one group of an experiment config."""
    if timing not in TIMINGS:
        raise ValueError(f"unknown timing backend {timing!r}; valid: {', '.join(TIMINGS)}")
    if group.kind not in KINDS:
        raise ValueError(f"group {group.name!r}: unknown cell kind {group.kind!r}; valid: {', '.join(KINDS)}")
    cells = []
    axes = [(axis, tuple(group.sweep[axis])) for axis in group.axes]
    for values in itertools.product(*(v for _, v in axes)):
        cell = {"kind": group.kind, **group.params.to_dict(), **dict(zip((a for a, _ in axes), values))}
        if group.kind in TIMED:
            cell["timing"] = timing
        missing = [k for k in KINDS[group.kind] if k not in cell]
        if missing:
            raise ValueError(f"group {group.name!r} ({group.kind}) does not set {', '.join(missing)}")
        cells.append(cell)
    return cells


def cell_id(cell: dict) -> str:
    """kind|key=value|... over the sorted parameters: equal cells have equal ids."""
    return "|".join([cell["kind"]] + [f"{k}={cell[k]}" for k in sorted(cell) if k != "kind"])


def slug(cell: dict) -> str:
    """A file-name-safe, unique short name of a cell (for logs and training workdirs)."""
    head = "_".join(str(cell[k]) for k in ("kind", "model", "impl", "resolution", "batch") if k in cell)
    head = re.sub(r"[^A-Za-z0-9.=-]+", "_", head)[:80]
    return f"{head}-{hashlib.sha1(cell_id(cell).encode()).hexdigest()[:8]}"


def describe(cell: dict) -> str:
    """A short human-readable label of a cell for progress lines."""
    keys = [k for k in ("model", "impl", "batch", "dtype", "resolution", "steps") if k in cell]
    return f"{cell['kind']} " + " ".join(f"{cell[k]}" if k in ("model", "impl", "dtype") else f"{k}={cell[k]}"
                                         for k in keys)
