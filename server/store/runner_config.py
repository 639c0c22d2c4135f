"""Per-model runner settings from `/engines/_configure`, kept on disk across restarts.

DMR holds these in memory only, so a restart silently drops a configured context size (its
users' most frequent complaint, docker/model-runner#223, #726). We write them to
`<models dir>/runner-config.json`, keyed by model ID so every tag of a model shares them, and
drop them when the model is deleted.

Runtime flags pass through an allowlist of the llama.cpp flags this server can honour at load
time; anything else is refused with a message instead of being silently ignored.
"""

from __future__ import annotations

import json
import shlex
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest

#: llama-server flag -> engine setting it changes.
FLAG_SETTINGS = {
    "-c": "context_size", "--ctx-size": "context_size",
    "-np": "parallel", "--parallel": "parallel",
    "-b": "n_batch", "--batch-size": "n_batch",
    "-t": "threads", "--threads": "threads",
}
_LIMITS = {"context_size": (0, 1 << 22), "parallel": (1, 64), "n_batch": (8, 1 << 16),
           "threads": (1, 1024)}
#: llama-server flags without a value -> (engine setting, value).
SWITCHES = {"-nr": ("extra_buffers", "off"), "--no-repack": ("extra_buffers", "off")}
FILE_NAME = "runner-config.json"


def parse_flags(flags: list[str]) -> dict[str, Any]:
    """Engine settings from llama.cpp flags (`--ctx-size 2048`, `-np=2`); InvalidRequest else."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(flags):
        flag = flags[i]
        if not isinstance(flag, str):
            raise InvalidRequest("runtime-flags must be strings", param="runtime-flags")
        if "/" in flag or "\\" in flag:
            raise InvalidRequest(f"runtime flag {flag!r}: paths are not allowed",
                                 param="runtime-flags")
        name, eq, value = flag.partition("=")
        if name in SWITCHES and not eq:
            setting, switched = SWITCHES[name]
            out[setting] = switched
            i += 1
            continue
        if name not in FLAG_SETTINGS:
            allowed = ", ".join(sorted({**FLAG_SETTINGS, **SWITCHES}))
            raise InvalidRequest(f"runtime flag {name!r} is not supported by this server "
                                 f"(supported: {allowed})", param="runtime-flags")
        if not eq:
            i += 1
            if i >= len(flags):
                raise InvalidRequest(f"runtime flag {name} needs a value", param="runtime-flags")
            value = flags[i]
        if value.startswith("-") or not value.isdigit():
            raise InvalidRequest(f"runtime flag {name} needs a positive integer, got {value!r}",
                                 param="runtime-flags")
        setting = FLAG_SETTINGS[name]
        low, high = _LIMITS[setting]
        if not low <= int(value) <= high:
            raise InvalidRequest(f"runtime flag {name} must be between {low} and {high}",
                                 param="runtime-flags")
        out[setting] = int(value)
        i += 1
    return out


def split_raw_flags(raw: str) -> list[str]:
    try:
        return shlex.split(raw)
    except ValueError as exc:
        raise InvalidRequest(f"raw-runtime-flags: {exc}", param="raw-runtime-flags") from exc


def go_duration(seconds: float) -> str:
    """How DMR (Go) prints a keep-alive: "5m0s", "1h0m0s", "-1" for forever."""
    if seconds < 0:
        return "-1"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass
class RunnerConfig:
    #: Tokens per sequence; None = not configured (packaged value or server default).
    context_size: int | None = None
    runtime_flags: list[str] = field(default_factory=list)
    #: Idle seconds before unloading; None = the server default; negative = never.
    keep_alive: float | None = None
    #: Reasoning tokens allowed (-1 unlimited, 0 thinking off); None = model default.
    reasoning_budget: int | None = None
    mode: str = "completion"
    #: llama.cpp's extra buffer types for this model: auto/on/off; None = the server's.
    extra_buffers: str | None = None

    def load_options(self) -> dict[str, Any]:
        """Keyword arguments for the engine's load(); the context-size field beats a flag."""
        options = parse_flags(self.runtime_flags)
        if self.context_size is not None and self.context_size > 0:
            options["context_size"] = self.context_size
        if self.extra_buffers is not None:
            options["extra_buffers"] = self.extra_buffers
        return options

    def to_dmr(self) -> dict[str, Any]:
        """DMR's BackendConfiguration JSON."""
        out: dict[str, Any] = {}
        if self.context_size is not None:
            out["context-size"] = self.context_size
        if self.runtime_flags:
            out["runtime-flags"] = list(self.runtime_flags)
        if self.keep_alive is not None:
            out["keep_alive"] = go_duration(self.keep_alive)
        llamacpp = {}
        if self.reasoning_budget is not None:
            llamacpp["reasoning-budget"] = self.reasoning_budget
        if self.extra_buffers is not None:
            llamacpp["extra-buffers"] = self.extra_buffers
        if llamacpp:
            out["llamacpp"] = llamacpp
        return out


class RunnerConfigs:
    """The file of configurations; every change is written at once, atomically."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / FILE_NAME
        self._lock = threading.Lock()
        self._configs: dict[str, RunnerConfig] = {}
        try:
            data = json.loads(self.path.read_text())
            for model_id, values in (data.get("configs") or {}).items():
                self._configs[model_id] = RunnerConfig(**values)
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{self.path} is damaged ({exc}); fix or delete it") from exc

    def get(self, model_id: str) -> RunnerConfig | None:
        with self._lock:
            return self._configs.get(model_id)

    def items(self) -> list[tuple[str, RunnerConfig]]:
        with self._lock:
            return list(self._configs.items())

    def put(self, model_id: str, config: RunnerConfig) -> None:
        with self._lock:
            self._configs[model_id] = config
            self._save()

    def remove(self, model_id: str) -> None:
        with self._lock:
            if self._configs.pop(model_id, None) is not None:
                self._save()

    def clear(self) -> None:
        with self._lock:
            self._configs.clear()
            self._save()

    def _save(self) -> None:
        from .store import _atomic_write

        data = {"configs": {k: asdict(v) for k, v in self._configs.items()}}
        _atomic_write(self.path, json.dumps(data, indent=1).encode())
