"""Run feedback: one JSON object per line in `workdir/metrics.jsonl` (big_vision style, no TensorBoard)
and a rich progress bar. Only process 0 writes."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.7g}")
    return value


def read_metrics(workdir: str | Path) -> list[dict]:
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsWriter:
    """Appends {"step": s, ...} lines. On resume from step s, lines logged after s by the interrupted
    run are dropped, so a resumed run's file equals an uninterrupted run's."""

    def __init__(self, workdir: str | Path, *, resume_step: int = 0, enabled: bool = True):
        self.path = Path(workdir) / METRICS_FILE
        self.enabled = enabled
        if enabled and self.path.exists():
            kept = [r for r in read_metrics(workdir) if r.get("step", 0) <= resume_step]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            os.replace(tmp, self.path)

    def write(self, step: int, metrics: dict) -> None:
        if self.enabled:
            record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


class Progress:
    """A rich progress bar over training steps showing the latest metrics; a no-op when disabled."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, description: str = "train"):
        self._bar = None
        if enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self._task = self._bar.add_task(description, total=total, completed=start, info="")
            self._bar.start()

    def update(self, step: int, info: str | None = None) -> None:
        if self._bar is not None:
            fields = {} if info is None else {"info": info}
            self._bar.update(self._task, completed=step, **fields)

    def print(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
