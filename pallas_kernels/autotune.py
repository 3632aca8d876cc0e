"""Autotuner and tuning cache for block ops.

`tune(problem)` times every supported implementation (and, for those with a config space, each
candidate config) under the one timing protocol and records the winner. Results live in JSON files
under pallas_kernels/tuning/, one per GPU kind (e.g. nvidia_h100_80gb_hbm3.json), keyed by op,
dtype and block shape without the batch; each key holds entries per measured batch, and a lookup
takes the nearest measured batch. `impl='auto'` reads `cached_best`; an implementation called
without a config reads `cached_config`.

    python -m pallas_kernels.autotune --models convfirst_tiny --batch 128   # on the GPU
"""
from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import re
from pathlib import Path

import jax

TUNING_DIR = Path(__file__).parent / "tuning"
ENV_CACHE = "CONVFIRST_TUNING_FILE"  # override the cache file (tests, experiments)


def device_slug(device_kind: str | None = None) -> str:
    kind = device_kind or jax.devices()[0].device_kind
    return re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_")


def cache_path(device_kind: str | None = None) -> Path:
    """The device's own cache file: where `write_entries` writes."""
    return Path(os.environ.get(ENV_CACHE) or TUNING_DIR / f"{device_slug(device_kind)}.json")


# Parts of one chip (GH100: the same SM design, shared memory and instructions; SM count, clocks and
# DRAM differ) whose tuning transfers roughly: a part without a cache of its own reads its sibling's,
# with a warning, until it is tuned itself.
SIBLING_KINDS = {"NVIDIA H200": "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe": "NVIDIA H100 80GB HBM3"}


def read_path(device_kind: str | None = None) -> Path:
    """The cache file lookups read: the device's own, else a tuned sibling part's (logged once)."""
    own = cache_path(device_kind)
    kind = device_kind or jax.devices()[0].device_kind
    sibling = SIBLING_KINDS.get(kind)
    if own.exists() or os.environ.get(ENV_CACHE) or sibling is None or not cache_path(sibling).exists():
        return own
    _warn_sibling(kind, sibling)
    return cache_path(sibling)


@functools.lru_cache(maxsize=None)
def _warn_sibling(kind: str, sibling: str) -> None:
    logging.getLogger(__name__).warning(
        "no tuning cache for %s: using the one tuned on %s (same chip). For choices measured on this "
        "part run `convfirst tune --models ... --batch 128` on it.", kind, sibling)


# Static options that change numbers but not speed, left out of the key (a model's BatchNorm eps
# must find the entry tuned with the default eps).
SPEED_NEUTRAL_STATIC = ("ln_eps",)


def shape_key(op: str, x, params, static: dict) -> str:
    """Op, dtype, per-image input shape, parameter shapes and static options; no batch."""
    params = params.key_form(**static) if hasattr(params, "key_form") else params
    leaves = jax.tree.leaves(params, is_leaf=lambda v: v is None)
    pshapes = ",".join("-" if v is None else "x".join(map(str, v.shape)) for v in leaves)
    opts = ",".join(f"{k}={v}" for k, v in sorted(static.items()) if k not in SPEED_NEUTRAL_STATIC)
    return f"{op}|{jax.numpy.dtype(x.dtype).name}|{'x'.join(map(str, x.shape[1:]))}|{pshapes}|{opts}"


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text())


def load_cache(device_kind: str | None = None) -> dict:
    path = read_path(device_kind)
    if not path.exists():
        return {"device_kind": device_kind, "entries": {}}
    return _load(str(path), path.stat().st_mtime)


def _entry(op, x, params, static) -> dict | None:
    if jax.default_backend() != "gpu":
        return None
    by_batch = load_cache()["entries"].get(shape_key(op, x, params, static))
    if not by_batch:
        return None
    batch = x.shape[0]
    nearest = min(by_batch, key=lambda b: abs(int(b) - batch))
    return by_batch[nearest]


def cached_best(op: str, x, params, static: dict) -> str | None:
    entry = _entry(op, x, params, static)
    return entry["best_impl"] if entry else None


def cached_config(op: str, impl: str, x, params, static: dict) -> dict | None:
    entry = _entry(op, x, params, static)
    return (entry or {}).get("configs", {}).get(impl)


def tune(problem, *, dtype, impls=None, max_configs: int = 12, protocol=None, log=print) -> dict:
    """Time each implementation (each candidate config where it has a space) on `problem`; the
    fastest config of each implementation that also matches the reference wins (a fast but wrong
    config is recorded in `errors` and never cached)."""
    import jax.numpy as jnp

    from pallas_kernels import OPS
    from pallas_kernels.timing import Protocol, time_call

    protocol = protocol or Protocol(warmup=3, iterations=20)
    op = OPS[problem.op]
    params = problem.make_params(jax.random.key(1))
    static = problem.static()
    x0 = problem.make_x(jax.random.key(2), dtype)
    make = lambda i: (problem.make_x(jax.random.key(100 + i), dtype),)  # noqa: E731
    key = shape_key(problem.op, x0, params, static)
    if impls:  # a partial retune merges into the cached entry: refuse now, not after the timing
        _check_mergeable(key, problem.batch, protocol)
    timed, errors = {}, {}  # name -> [(ms, config)]
    for name in impls or op.names:
        reason = op.why_unsupported(name, x0, params, jax.default_backend(), **static)
        if reason:
            errors[name] = reason
            continue
        space = op.implementations[name].candidates
        cands = space(problem, params)[:max_configs] if space else [None]
        for cfg in cands:
            fn = lambda x, cfg=cfg: op(x, params, impl=name, config=cfg, **static)  # noqa: E731
            try:
                ms = time_call(fn, make, protocol=protocol).median_ms
            except Exception as e:  # a config that fails to compile is skipped, and said so
                errors[f"{name}:{cfg}"] = f"{type(e).__name__}: {str(e)[:200]}"
                continue
            log(f"  {problem.label()} {name} {cfg or ''}: {ms:.4f} ms")
            timed.setdefault(name, []).append((ms, cfg))
    times, configs = {}, {}
    with jax.default_matmul_precision("highest"):
        reference = op.reference(x0.astype(jnp.float32), params, **static)
    for name, runs in timed.items():
        for ms, cfg in sorted(runs, key=lambda r: r[0]):
            if (wrong := _wrong_result(op, problem, params, static, x0, reference, name, cfg)) is None:
                times[name] = ms
                if cfg is not None:
                    configs[name] = cfg.to_dict()
                break
            errors[f"{name}:{cfg}"] = wrong
            log(f"  {problem.label()} {name} {cfg or ''}: REJECTED, {wrong}")
    if not times:
        raise RuntimeError(f"no implementation ran {problem.label()}: {errors}")
    best = min(times, key=times.get)
    return {"best_impl": best, "times_ms": times, "configs": configs, "errors": errors,
            "dtype": jnp.dtype(dtype).name, "protocol": protocol.describe(),
            "measured": datetime.date.today().isoformat(), "_key": key,
            "_tuned": list(impls or op.names)}


def _wrong_result(op, problem, params, static, x, reference, name, cfg) -> str | None:
    """None when `name` with `cfg` matches the float32 reference by the kernel tests' rule, else what
    is wrong."""
    from pallas_kernels.common import mismatch

    y = op(x, params, impl=name, config=cfg, **static)
    wrong = mismatch(y, reference, x.dtype, problem.accumulation_depth())
    return None if wrong is None else f"wrong result: {wrong}"


def write_entries(results: list[dict], batch: int, device_kind: str | None = None) -> Path:
    """Merge tuning results into the device's cache file (atomic replace)."""
    path = cache_path(device_kind)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("device_kind", device_kind or jax.devices()[0].device_kind)
    entries = data.setdefault("entries", {})
    for r in results:
        r = dict(r)
        key = r.pop("_key")
        by_batch = entries.setdefault(key, {})
        tuned = r.pop("_tuned", None)
        old = by_batch.get(str(batch))
        by_batch[str(batch)] = _merged(key, old, r, tuned) if old and tuned else r
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def _refuse_other_protocol(key: str, cached: str | None, retune: str | None) -> None:
    """Times under different kernel-time protocols do not compare: a partial retune must not merge."""
    from pallas_kernels.timing import kernel_time_protocol

    if kernel_time_protocol(cached) != kernel_time_protocol(retune):
        raise ValueError(f"{key}: the cached entry was timed under {cached!r}, this retune under {retune!r}; "
                         "their times do not compare: retune every implementation (convfirst tune without --impls)")


def _check_mergeable(key: str, batch: int, protocol) -> None:
    path = cache_path()
    old = (json.loads(path.read_text())["entries"].get(key, {}) if path.exists() else {}).get(str(batch))
    if old:
        _refuse_other_protocol(key, old.get("protocol"), protocol.describe())


def _merged(key: str, old: dict, new: dict, tuned: list[str]) -> dict:
    """An entry retuned for some implementations (`convfirst tune --impls`): the new results for
    those, the old entry's for the other implementations the op still has (each dated in
    `measured_by_impl`), and the best over both. Times measured under different kernel-time
    protocols do not compare: refused, since keeping only the new ones would narrow `best_impl`."""
    from pallas_kernels import OPS

    _refuse_other_protocol(key, old.get("protocol"), new.get("protocol"))
    known = set(OPS[key.split("|")[0]].names)
    keep = lambda d: {k: v for k, v in d.items() if k.split(":")[0] in known - set(tuned)}  # noqa: E731
    kept = keep(old.get("times_ms", {}))
    times = {**kept, **new["times_ms"]}
    merged = dict(new, times_ms=times, best_impl=min(times, key=times.get),
                  configs={**keep(old.get("configs", {})), **new["configs"]},
                  errors={**keep(old.get("errors", {})), **new["errors"]})
    if kept:
        old_dates = old.get("measured_by_impl", {})
        merged["measured_by_impl"] = {**{k: old_dates.get(k, old.get("measured")) for k in kept},
                                      **{k: new["measured"] for k in new["times_ms"]}}
    return merged
