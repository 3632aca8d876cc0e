"""Experiment runner: config -> cells, each in a fresh process -> DIR/results.jsonl -> report.

    python -m experiments.run --config experiments/configs/reproduce/waterline.py[:ARG] --out DIR
    convfirst reproduce waterline[:ARG] --out DIR          (the same, by name)

- Every cell runs as `python -m experiments.cell` in its own process; its log goes to DIR/logs/.
- Each finished cell appends one JSON line to DIR/results.jsonl (write, flush, fsync), with its
  status ('ok', or 'failed' / 'timeout' / 'crashed' and the error), the environment (device, driver,
  jax version, commit, timing protocol) and its result.
- Resume: cells whose id already has a line are skipped, failed ones too unless --retry-failed (and
  every selected cell runs again with --rerun, its new row superseding the old). A
  truncated last line (the run was killed while writing) does not count. Because ids list every
  parameter, experiments whose cells coincide share them (efficiency-gap reuses efficiency-table's).
- A cell whose CUPTI kernel list shows XLA's convolution autotuner gone wrong in its process
  (experiments/outliers.py) is recorded as 'outlier' and launched again, up to OUTLIER_ATTEMPTS times
  per run; outlier rows are left out of reports and rerun on resume.
- --time-limit S: no cell starts after S seconds, and a cell still running at S is stopped without a
  line, so the same command later continues exactly there.
- DIR/manifest.json records every command run on DIR; then the report writes CSV, Markdown and PNG.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.cells import TIMINGS, cell_id, describe, expand, slug
from experiments.outliers import outlier_reason

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "reproduce"
EXPERIMENTS = {  # NAME of `convfirst reproduce NAME` -> config file
    "efficiency-table": "efficiency_table.py",
    "efficiency-gap": "efficiency_gap.py",
    "waterline": "waterline.py",
    "ablations": "ablations.py",
    "small-scale": "small_scale.py",
}
RESULTS = "results.jsonl"
MANIFEST = "manifest.json"
CELL_COMMAND = (sys.executable, "-m", "experiments.cell")
FINAL_FAILURES = ("failed", "timeout", "crashed")
MIN_CELL_S = 10  # do not start a cell with less time than this left
OUTLIER_ATTEMPTS = 3  # launches of a cell within one run while its timings come out as outliers
RUNNER_PID = "CONVFIRST_RUNNER_PID"  # tells a cell whose death to follow (experiments.cell.follow_runner)


def config_spec(name: str) -> str:
    """'waterline[:ARG]' -> 'path/to/waterline.py[:ARG]'; unknown names list the valid ones."""
    base, sep, arg = name.partition(":")
    if base not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {base!r}; valid: {', '.join(EXPERIMENTS)}")
    return f"{CONFIG_DIR / EXPERIMENTS[base]}{sep}{arg}"


def load(spec: str):
    """The experiment config of `path.py[:ARG]` (train.config_utils' big_vision-style loader)."""
    from train.config_utils import load_config

    return load_config(spec)


def read_results(out: Path) -> tuple[dict[str, dict], int]:
    """{cell id: last row} of DIR/results.jsonl, and how many lines were unreadable (a killed write)."""
    rows, bad = {}, 0
    path = Path(out) / RESULTS
    if not path.exists():
        return rows, 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows[row["id"]] = classify(row)
            except (json.JSONDecodeError, KeyError, TypeError):
                bad += 1
    return rows, bad


def classify(row: dict) -> dict:
    """An 'ok' row whose kernels show an XLA autotuning outlier (experiments.outliers) is an 'outlier':
    excluded from reports and run again, also when it was written before the check existed."""
    if row.get("status") != "ok":
        return row
    reason = outlier_reason(row.get("result"), str(row.get("cell", {}).get("dtype", "")))
    return dict(row, status="outlier", error=reason) if reason else row


def append_result(out: Path, row: dict) -> None:
    """Append one line durably; a torn last line from a killed run is closed off first."""
    path = Path(out) / RESULTS
    line = json.dumps(row, default=str) + "\n"
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as r:
            r.seek(-1, os.SEEK_END)
            if r.read(1) != b"\n":
                line = "\n" + line
    with open(path, "ab") as f:
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


def needs_run(row: dict | None, retry_failed: bool, rerun: bool = False) -> bool:
    return rerun or row is None or row.get("status") == "outlier" or (retry_failed and row.get("status") != "ok")


def _run_cell(cell, out, cell_timeout_s, time_limit, start, cell_command, console) -> dict | None:
    """Launch a cell (again, in a fresh process, while its timings are outliers) and record each
    attempt; the last row, or None when the time limit stopped it."""
    row = None
    for attempt in range(1, OUTLIER_ATTEMPTS + 1):
        left = None if time_limit is None else time_limit - (time.monotonic() - start)
        if row is not None and left is not None and left < MIN_CELL_S:
            return row
        timeout = cell_timeout_s if left is None else min(cell_timeout_s, left)
        t0 = time.monotonic()
        outcome = launch(cell, out, timeout, cell_command)
        if outcome is None and timeout < cell_timeout_s:
            return None
        if outcome is None:
            outcome = {"status": "timeout", "error": f"no result after {timeout:.0f} s (cell_timeout_s)"}
        row = classify({"id": cell_id(cell), "cell": cell, **outcome, "elapsed_s": round(time.monotonic() - t0, 2),
                        "finished": _now()})
        append_result(out, row)
        if row["status"] != "outlier":
            return row
        console.print(f"  [yellow]attempt {attempt}/{OUTLIER_ATTEMPTS} of {describe(cell)}: {row['error']}[/yellow]")
    return row


class _Stop(Exception):
    """SIGTERM/SIGINT while a cell runs."""


def launch(cell: dict, out: Path, timeout_s: float, cell_command=CELL_COMMAND) -> dict | None:
    """Run one cell in a fresh process: the cell's result JSON, a 'crashed' failure when the process
    ended without one, or None when it ran past `timeout_s` (and was killed)."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = slug(cell)
    result, log = logs / f"{name}.result.json", logs / f"{name}.log"
    result.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{RUNNER_PID: str(os.getpid())},
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    cmd = [*cell_command, "--cell", json.dumps(cell), "--result", str(result), "--workdir", str(out)]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if result.exists():
        outcome = json.loads(result.read_text())
        result.unlink()
        return outcome
    tail = log.read_text(errors="replace")[-2000:]
    return {"status": "crashed", "error": f"exit code {proc.returncode} without a result; log tail:\n{tail}"}


def update_manifest(out: Path, config, spec: str, command: str, timing: str) -> None:
    path = out / MANIFEST
    doc = json.loads(path.read_text()) if path.exists() else {"experiments": {}}
    entry = doc["experiments"].setdefault(config.name, {"runs": []})
    entry.update(config=os.path.relpath(spec.partition(":")[0], REPO), arg=spec.partition(":")[2], timing=timing)
    entry["runs"].append({"command": command, "started": _now(), "host": platform.node()})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_experiment(config, out, *, spec: str, command: str, timing: str = "real", time_limit: float | None = None,
                   retry_failed: bool = False, only: tuple[str, ...] = (), rerun: bool = False, cell_command=CELL_COMMAND,
                   console=None) -> dict:
    """Run the cells of `config` that `out` lacks; returns counts (cells, skipped, launched, ok, failed, left)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from convfirst.commands.output import console as make_console

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = console or make_console()
    cells = [c for c in expand(config, timing) if all(o in cell_id(c) for o in only)]
    done, bad = read_results(out)
    if bad:
        console.print(f"[yellow]{bad} unreadable line(s) in {out / RESULTS} (a run killed while writing); "
                      "their cells run again[/yellow]")
    pending = [c for c in cells if needs_run(done.get(cell_id(c)), retry_failed, rerun)]
    update_manifest(out, config, spec, command, timing)
    counts = {"cells": len(cells), "skipped": len(cells) - len(pending), "launched": 0, "ok": 0, "failed": 0, "left": 0}
    console.print(f"{config.name}: {len(cells)} cells, {counts['skipped']} already in {out / RESULTS}, "
                  f"{len(pending)} to run (timing: {timing})")
    start = time.monotonic()
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM,)}
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, auto_refresh=False, transient=True)
    try:
        with progress:
            task = progress.add_task(config.name, total=len(pending))
            for i, cell in enumerate(pending):
                left = None if time_limit is None else time_limit - (time.monotonic() - start)
                if left is not None and left < MIN_CELL_S:
                    counts["left"] = len(pending) - i
                    break
                progress.update(task, description=describe(cell))
                progress.refresh()
                row = _run_cell(cell, out, config.cell_timeout_s, time_limit, start, cell_command, console)
                counts["launched"] += 1
                if row is None:  # stopped by the time limit: not recorded
                    counts["left"] = len(pending) - i
                    console.print(f"  time limit reached during {describe(cell)}; not recorded")
                    break
                elapsed = row["elapsed_s"]
                ok = row["status"] == "ok"
                counts["ok" if ok else "failed"] += 1
                note = "ok" if ok else f"[red]{row['status']}[/red]: {str(row.get('error', ''))[:200]}"
                console.print(f"  [{i + 1}/{len(pending)}] {describe(cell)}: {note} ({elapsed:.0f} s)")
                progress.advance(task)
    except _Stop:
        counts["left"] = len(pending) - counts["launched"]
        console.print("[yellow]stopped by a signal; rerun the same command to continue[/yellow]")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if counts["left"]:
        console.print(f"[yellow]{counts['left']} cell(s) left: rerun the same command to continue[/yellow]")
    return counts


def _raise_stop(signum, frame):
    raise _Stop()


def add_arguments(p) -> None:
    """Arguments shared by `convfirst reproduce` and `python -m experiments.run`."""
    p.add_argument("--out", default=None, help="run directory (results.jsonl, tables, plots); default runs/<name>")
    p.add_argument("--timing", default="real", choices=TIMINGS,
                   help="real: the timing protocol on this device; fake: synthetic cost-model times (tests only)")
    p.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="start no cell after S seconds; a cell running at S is stopped and left for the next run")
    p.add_argument("--retry-failed", action="store_true", help="run failed, timed-out and crashed cells again")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="run only cells whose id contains TEXT (repeatable, all must match), e.g. model=convnext_tiny")
    p.add_argument("--rerun", action="store_true",
                   help="run the selected cells (--only) again even where they have a row; the new row supersedes "
                        "the old, which stays in results.jsonl (e.g. to redo a table's cells on another GPU)")
    p.add_argument("--report-only", action="store_true", help="only rewrite the tables and plots from results.jsonl")
    p.add_argument("--no-report", action="store_true", help="run the cells, skip the tables and plots")
    p.add_argument("--accuracy", action="append", default=[], metavar="MODEL=WORKDIR",
                   help="efficiency-gap: top-1 of MODEL from a training workdir (last val_accuracy in metrics.jsonl)")


def execute(spec: str, args, command: str) -> int:
    """Load, run and report; shared by both entry points."""
    from convfirst.commands.output import console as make_console
    from experiments import report

    config = load(spec)
    out = Path(args.out or REPO / "runs" / config.name)
    console = make_console()
    if args.accuracy:
        report.record_accuracy(out, config.name, args.accuracy)
    counts = None
    if not args.report_only:
        counts = run_experiment(config, out, spec=spec, command=command, timing=args.timing,
                                time_limit=args.time_limit, retry_failed=args.retry_failed, only=tuple(args.only),
                                rerun=args.rerun, console=console)
    if not args.no_report:
        _, written = report.write_report(config, out, console=console)
        console.print(f"report: {', '.join(str(p.relative_to(out)) for p in written)} in {out}")
    if counts and counts["failed"]:
        console.print(f"[red]{counts['failed']} cell(s) failed[/red]: see the status column and {out / 'logs'}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, metavar="FILE.py[:ARG]", help="experiment config file")
    add_arguments(p)
    args = p.parse_args(argv)
    command = " ".join(["python -m experiments.run", *(argv if argv is not None else sys.argv[1:])])
    try:
        return execute(args.config, args, command)
    except (ValueError, FileNotFoundError) as e:
        print(f"experiments.run: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
