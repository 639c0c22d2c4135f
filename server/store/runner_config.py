"""Per-model runner settings from `/engines/_configure`, kept on disk across restarts.

DMR holds these in memory only, so a restart silently drops a configured context size (its
users' most frequent complaint, docker/model-runner#223, #726). We write them to
`<models dir>/runner-config.json`, keyed by model ID so every tag of a model shares them, and
drop them when the model is deleted.

Runtime flags pass through an allowlist: every flag of DMR's documented tables is honoured,
sampling ones (--temp, --top-p, ...) as the model's default request settings, the others at
load time (GPU ones are accepted and have no effect on a CPU-only build); anything else is
refused with a message instead of being silently ignored.
"""

from __future__ import annotations

import json
import shlex
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest


@dataclass(frozen=True)
class Flag:
    """What one llama-server flag sets: `kind` engine (a load setting), default (a model
    default request setting, store/model_defaults.py), config (a runner configuration field)
    or gpu (a load setting a CPU-only build ignores)."""

    kind: str
    target: str
    #: int, float, a tuple of choices, or None for a switch (then `value` is what it sets).
    parse: Any
    low: float | None = None
    high: float | None = None
    value: Any = None


def _flags(names: str, flag: Flag) -> dict[str, Flag]:
    return {name: flag for name in names.split()}


#: Every flag of DMR's documented tables (docs "Runtime flags") and a few more llama-server
#: spellings. Anything else is refused by name.
FLAGS: dict[str, Flag] = {
    **_flags("-c --ctx-size", Flag("engine", "context_size", int, 0, 1 << 22)),
    **_flags("-np --parallel", Flag("engine", "parallel", int, 1, 64)),
    **_flags("-b --batch-size", Flag("engine", "n_batch", int, 8, 1 << 16)),
    **_flags("-t --threads", Flag("engine", "threads", int, 1, 1024)),
    **_flags("-tb --threads-batch", Flag("engine", "threads_batch", int, 1, 1024)),
    **_flags("--mlock", Flag("engine", "mlock", None, value=True)),
    **_flags("--no-mmap", Flag("engine", "mmap", None, value=False)),
    **_flags("-nr --no-repack", Flag("engine", "extra_buffers", None, value="off")),
    **_flags("--rope-scaling", Flag("engine", "rope_scaling", ("none", "linear", "yarn"))),
    **_flags("--rope-freq-base", Flag("engine", "rope_freq_base", float, 0, None)),
    **_flags("--rope-freq-scale", Flag("engine", "rope_freq_scale", float, 0, None)),
    **_flags("-ngl --n-gpu-layers --gpu-layers", Flag("gpu", "n_gpu_layers", int, -1, 1 << 16)),
    **_flags("-mg --main-gpu", Flag("gpu", "main_gpu", int, 0, 1024)),
    **_flags("-sm --split-mode", Flag("gpu", "split_mode", ("none", "layer", "row"))),
    **_flags("--temp --temperature", Flag("default", "temperature", float, 0, 5)),
    **_flags("--top-k", Flag("default", "top_k", int, 0, 1 << 20)),
    **_flags("--top-p", Flag("default", "top_p", float, 0, 1)),
    **_flags("--min-p", Flag("default", "min_p", float, 0, 1)),
    **_flags("--repeat-penalty", Flag("default", "repeat_penalty", float, 0, 10)),
    **_flags("--repeat-last-n", Flag("default", "repeat_last_n", int, -1, 1 << 20)),
    **_flags("--presence-penalty", Flag("default", "presence_penalty", float, -2, 2)),
    **_flags("--frequency-penalty", Flag("default", "frequency_penalty", float, -2, 2)),
    **_flags("-s --seed", Flag("default", "seed", int, -1, (1 << 32) - 1)),
    **_flags("-n --n-predict --predict", Flag("default", "max_tokens", int, -1, 1 << 22)),
    **_flags("--no-prefill-assistant", Flag("config", "prefill_assistant", None, value=False)),
    **_flags("--reasoning-budget", Flag("config", "reasoning_budget", int, -1, 1 << 22)),
}
#: Switches (no value), for callers that strip them.
SWITCHES = {name: (f.target, f.value) for name, f in FLAGS.items() if f.parse is None}
FILE_NAME = "runner-config.json"


@dataclass
class ParsedFlags:
    """Runtime flags sorted by what they change."""

    engine: dict[str, Any] = field(default_factory=dict)
    default: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        return self.default


def _value(name: str, flag: Flag, text: str) -> Any:
    if isinstance(flag.parse, tuple):
        if text not in flag.parse:
            raise InvalidRequest(f"runtime flag {name} must be one of {', '.join(flag.parse)}, "
                                 f"got {text!r}", param="runtime-flags")
        return text
    kind = "a whole number" if flag.parse is int else "a number"
    try:
        value = flag.parse(text)
    except ValueError:
        raise InvalidRequest(f"runtime flag {name} needs {kind}, got {text!r}",
                             param="runtime-flags") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidRequest(f"runtime flag {name} needs {kind}, got {text!r}",
                             param="runtime-flags")
    if (flag.low is not None and value < flag.low) or \
            (flag.high is not None and value > flag.high):
        bounds = f"at least {flag.low}" if flag.high is None else \
            f"between {flag.low} and {flag.high}"
        raise InvalidRequest(f"runtime flag {name} must be {bounds}", param="runtime-flags")
    return value


def parse_runtime_flags(flags: list[str]) -> ParsedFlags:
    """llama-server flags (`--ctx-size 2048`, `-np=2`, `--temp 0.7`, `--mlock`) sorted by what
    they change; InvalidRequest naming the first one this server does not know."""
    out = ParsedFlags()
    i = 0
    while i < len(flags):
        item = flags[i]
        if not isinstance(item, str):
            raise InvalidRequest("runtime-flags must be strings", param="runtime-flags")
        if "/" in item or "\\" in item:
            raise InvalidRequest(f"runtime flag {item!r}: paths are not allowed",
                                 param="runtime-flags")
        name, eq, text = item.partition("=")
        flag = FLAGS.get(name)
        if flag is None:
            allowed = ", ".join(sorted(n for n in FLAGS if n.startswith("--")))
            raise InvalidRequest(f"runtime flag {name!r} is not supported by this server "
                                 f"(supported: {allowed}, and their short forms)",
                                 param="runtime-flags")
        if flag.parse is None:
            if eq:
                raise InvalidRequest(f"runtime flag {name} takes no value", param="runtime-flags")
            value = flag.value
        else:
            if not eq:
                i += 1
                if i >= len(flags) or not isinstance(flags[i], str):
                    raise InvalidRequest(f"runtime flag {name} needs a value",
                                         param="runtime-flags")
                text = flags[i]
            value = _value(name, flag, text)
        getattr(out, flag.kind)[flag.target] = value
        i += 1
    if out.default.get("max_tokens", 1) < 1:
        del out.default["max_tokens"]  # -1: until done, as without the flag
    if out.default.get("seed", 0) < 0:
        del out.default["seed"]  # -1: random
    return out


def parse_flags(flags: list[str]) -> dict[str, Any]:
    """The load settings of runtime flags (engine and GPU ones)."""
    parsed = parse_runtime_flags(flags)
    return {**parsed.engine, **parsed.gpu}


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

    def flags(self) -> ParsedFlags:
        return parse_runtime_flags(self.runtime_flags)

    def reasoning(self) -> int | None:
        """The reasoning budget: a --reasoning-budget flag, else the llamacpp field."""
        return self.flags().config.get("reasoning_budget", self.reasoning_budget)

    @property
    def prefill_assistant(self) -> bool:
        """False with --no-prefill-assistant: a trailing assistant message is a whole turn."""
        return self.flags().config.get("prefill_assistant", True)

    def model_defaults(self):
        """The default request settings its sampling flags (--temp, --top-p, ...) give."""
        from .model_defaults import ModelDefaults

        return ModelDefaults.from_values(self.flags().defaults, "runtime-flags")

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
