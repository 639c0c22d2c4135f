"""The pull/push progress bar (rich on a terminal, silent elsewhere)."""

from __future__ import annotations

import io

from server.cli_output import ProgressBar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(layer: str, current: int, size: int) -> dict:
    return {"type": "progress", "layer": {"id": layer, "current": current, "size": size}}


def test_a_bar_per_layer_on_a_terminal():
    out = _Terminal()
    bar = ProgressBar(out)
    for done in (0, 50_000_000, 100_000_000):
        bar.update(_progress("sha256:0123456789abcdef", done, 100_000_000))
    bar.update(_progress("sha256:feedface", 5, 10))
    bar.update({"type": "success", "message": "done"})
    bar.close()
    text = out.getvalue()
    assert "0123456789ab" in text and "100.0/100.0 MB" in text
    assert "feedface" in text and "5/10 bytes" in text


def test_nothing_where_no_terminal():
    out = io.StringIO()
    bar = ProgressBar(out)
    bar.update(_progress("sha256:0123456789abcdef", 1, 2))
    bar.close()
    assert out.getvalue() == ""
