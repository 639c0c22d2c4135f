"""The one duration syntax of the settings, the routes and the engines' configuration: seconds
as a number, or Go/Ollama-style text ("5m", "1h30m", "-1" = forever).

A floor module (stdlib only), so that every floor can read durations the same way; it moved
here from server/config.py, which re-exports it.
"""

from __future__ import annotations

import math
from typing import Any


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Go/Ollama-style duration ("5m", "1h30m", "-1" = forever)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration: {value!r}")
    text = str(value).strip()
    try:
        seconds = float(value if isinstance(value, int | float) else text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds):  # NaN would make every expiry comparison false
            raise ValueError(f"invalid duration: {value!r}")
        return seconds
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total, number, i = 0.0, "", 0
    negative = text.startswith("-")
    text = text.lstrip("+-")
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if unit not in units or not number:
            raise ValueError(f"invalid duration: {value!r}")
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        raise ValueError(f"invalid duration: {value!r} (missing unit)")
    return -total if negative else total
