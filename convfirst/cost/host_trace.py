"""Where a jitted call's host time goes: the host-side events of a `jax.profiler` trace, totalled.

A training step that launches ~2,000 kernels can be paced by the host (run Z: 29-46 ms of host time
per call for 22 ms of kernels), yet launches alone cost the host only 3-13 us each (run ZB,
scripts/probe_step_dispatch.py). The trace's host threads say what else the call does: XLA's runtime
records one event per thunk and per runtime stage (argument handling, allocation, execution), and
JAX one per Python-side stage. Names are totalled per thread with the digits dropped (buffer and
instruction numbers), so the thousand launches of one kind add up to one row.
"""
from __future__ import annotations

import glob
import re
from collections import defaultdict

_DIGITS = re.compile(r"\d+")


def normalize(name: str, width: int = 80) -> str:
    """An event's kind: its name with numbers replaced by '#', cut to `width` characters."""
    return _DIGITS.sub("#", name)[:width]


def host_events(trace_dir: str) -> list[tuple[str, str, int, int]]:
    """(thread, event name, start ns, duration ns) of every host-side event in the trace under `trace_dir`."""
    from jax.profiler import ProfileData

    paths = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))
    if not paths:
        raise FileNotFoundError(f"no .xplane.pb under {trace_dir}: was jax.profiler.trace given this directory?")
    data = ProfileData.from_file(paths[-1])
    return [(line.name, ev.name, ev.start_ns, ev.duration_ns)
            for plane in data.planes if plane.name.startswith("/host:")
            for line in plane.lines for ev in line.events]


def summarize(events, calls: int, top: int = 30) -> list[dict]:
    """The `top` (thread, kind) rows by total host time, per call: count and ms. Nested events count
    in their own row and in their parents' (a thunk inside ExecuteHelper): read rows as a tree."""
    total, count = defaultdict(int), defaultdict(int)
    for thread, name, _, dur in events:
        key = (normalize(thread, 40), normalize(name))
        total[key] += dur
        count[key] += 1
    rows = sorted(total, key=total.get, reverse=True)[:top]
    return [{"thread": t, "event": e, "per_call": count[t, e] / calls, "ms_per_call": total[t, e] / calls / 1e6}
            for t, e in rows]


def format_summary(rows: list[dict]) -> str:
    lines = [f"host time per call, by thread and event kind (top {len(rows)}):"]
    lines += [f"  {r['ms_per_call']:8.3f} ms  x{r['per_call']:<7.0f} {r['thread']:<24.24} {r['event']}" for r in rows]
    return "\n".join(lines)


def trace_calls(run, calls: int, trace_dir: str, top: int = 30) -> list[dict]:
    """Run `run()` (returns what to block on) `calls` times under the profiler; the summary per call."""
    import jax

    jax.block_until_ready(run())  # warm: nothing of the first call's set-up in the trace
    with jax.profiler.trace(trace_dir):
        for _ in range(calls):
            jax.block_until_ready(run())
    return summarize(host_events(trace_dir), calls, top)
