"""What the `dmr` client commands print: tables, sizes, ages and a pull/push progress bar."""

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
    """Draws DMR progress lines as one bar per layer on a terminal; quiet elsewhere."""

    def __init__(self, out: TextIO = sys.stderr):
        self.out = out
        self.tty = out.isatty()
        self._layer: str | None = None
        self._started = time.monotonic()

    def update(self, message: dict[str, Any]) -> None:
        if message.get("type") != "progress":
            return
        layer = message.get("layer") or {}
        layer_id, done, total = layer.get("id", ""), layer.get("current", 0), layer.get("size", 0)
        if self._layer != layer_id:
            if self._layer is not None and self.tty:
                self.out.write("\n")
            self._layer, self._started = layer_id, time.monotonic()
        if not self.tty:
            return
        width = 30
        filled = int(width * done / total) if total else width
        rate = done / max(time.monotonic() - self._started, 1e-3)
        short = layer_id.split(":", 1)[-1][:12]
        self.out.write(f"\r{short}: [{'=' * filled}{' ' * (width - filled)}] "
                       f"{size(done)}/{size(total)} {size(rate)}/s   ")
        self.out.flush()

    def close(self) -> None:
        if self._layer is not None and self.tty:
            self.out.write("\n")
            self.out.flush()
