"""What the `dmr` client commands print: tables, sizes, ages and a pull/push progress bar.

The progress bar is rich's. The tables stay ours: they are `docker model ls`'s plain columns,
which scripts read, and a rich table off a terminal wraps to 80 columns and draws a box.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def table(headers: list[str], rows: list[list[Any]], out: TextIO = sys.stdout) -> None:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def size(n: float | int | None) -> str:
    if n is None:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def ago(ts: float | int | None) -> str:
    if not ts:
        return ""
    seconds = max(0, time.time() - float(ts))
    for unit, scale in (("year", 31536000), ("month", 2592000), ("day", 86400),
                        ("hour", 3600), ("minute", 60)):
        if seconds >= scale:
            n = int(seconds // scale)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Less than a minute ago"


class ProgressBar:
    """Draws DMR progress messages as one rich progress bar per layer on a terminal (size,
    speed, time left); quiet elsewhere, so scripts and logs get no carriage returns."""

    def __init__(self, out: TextIO = sys.stderr):
        self.out = out
        self.tty = out.isatty()
        self._progress = None
        self._tasks: dict[str, Any] = {}

    def _bars(self):
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=Console(file=self.out))
            self._progress.start()
        return self._progress

    def update(self, message: dict[str, Any]) -> None:
        if message.get("type") != "progress" or not self.tty:
            return
        layer = message.get("layer") or {}
        layer_id, done, total = layer.get("id", ""), layer.get("current", 0), layer.get("size", 0)
        bars = self._bars()
        if layer_id not in self._tasks:
            short = layer_id.split(":", 1)[-1][:12]
            self._tasks[layer_id] = bars.add_task(short, total=total or None)
        bars.update(self._tasks[layer_id], completed=done, total=total or None)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
