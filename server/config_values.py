"""The value syntaxes of the settings: durations, sizes, booleans, lists, choices; and the
defaults that depend on the machine (RAM, the XDG data directory).

Apart from `config.py` so that the settings table stays one readable page, and so that other
layers (the remote engines' config, the Ollama codec) can share the one duration syntax
without importing the table.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core.durations import parse_duration  # noqa: F401 (the one duration syntax)


def default_models_dir() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(data_home) / "dmr" / "models"


def meminfo(key: str) -> int:
    """A /proc/meminfo figure in bytes (MemTotal, MemAvailable); 0 where there is none."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def default_prompt_cache_mib() -> int:
    """1/16 of the machine's RAM, between 256 MiB and 8 GiB (llama-server's --cache-ram)."""
    total = meminfo("MemTotal") >> 20
    return max(256, min(8192, total // 16)) if total else 1024


def parse_size(value: Any) -> int:
    """Bytes from a size: 123 (bytes), "512MiB", "8GB", "4g", "75%" (of the machine's RAM);
    "auto" = -1 (decided at start), "0"/"off"/"none" = 0 (no limit)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size: {value!r}")
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip().lower().replace(" ", "")
    if text == "auto":
        return -1
    if text in ("0", "off", "none", "unlimited"):
        return 0
    if text.endswith("%"):
        share = float(text[:-1])
        if not 0 < share <= 100:
            raise ValueError(f"invalid size: {value!r} (a share of RAM is 1-100%)")
        return int(meminfo("MemTotal") * share / 100)
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20,
             "mb": 1000 ** 2, "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30,
             "t": 1 << 40, "tb": 1000 ** 4, "tib": 1 << 40}
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):]
    if unit not in units or not number:
        raise ValueError(f"invalid size: {value!r} (use bytes or a unit: MiB, GiB, ...)")
    size = float(number) * units[unit]
    if math.isnan(size) or size < 0:
        raise ValueError(f"invalid size: {value!r}")
    return int(size)


def to_bool(value: Any) -> bool:
    """A YAML boolean, or "1"/"true"/"yes" (any case) from the environment or a flag."""
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


def to_list(value: Any) -> list[str]:
    """A list, or a comma-separated string; blank items dropped."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(item).strip() for item in items if str(item).strip()]


def to_path(value: Any) -> Path:
    return Path(os.path.expanduser(str(value)))


def to_socket_path(value: Any) -> str:
    return os.path.expanduser(str(value or ""))


def same(value: Any) -> Any:
    return value


def choice(*choices: str, on_off: bool = False) -> Callable[[Any], str]:
    """A parser accepting only `choices`; with `on_off`, YAML's true/false mean "on"/"off"
    and any case is accepted."""
    allowed = ", ".join(choices[:-1]) + " or " + choices[-1]

    def parse(value: Any, name: str = "value") -> str:
        text = value
        if on_off:
            text = {True: "on", False: "off"}.get(value, str(value).strip().lower())
        if text not in choices:
            raise ValueError(f"{name} must be {allowed}, not {value!r}")
        return text

    parse.choices = choices  # type: ignore[attr-defined]
    return parse
