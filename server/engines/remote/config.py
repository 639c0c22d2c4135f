"""What a remote engine forwards to: its upstreams and how it treats them.

A remote engine is configured under `engines:` in the YAML settings file, or with
`DMR_ENGINE_<NAME>=<url>,<url>` in the environment (which replaces that engine's upstream list
and keeps its other options). Every URL is an OpenAI base URL, the one a client would give the
OpenAI SDK: `http://gpu-1:8000/v1` for vLLM, SGLang or llama-server, `http://host:12434/engines/v1`
for another DMR.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

#: The local engine: it cannot be replaced by a remote one.
LOCAL_ENGINE = "llama.cpp"
ENV_PREFIX = "DMR_ENGINE_"
BALANCE_MODES = ("least-busy", "round-robin")

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_KEYS = {"upstreams", "api_key_env", "health_interval", "balance", "cooldown", "max_cooldown",
         "connect_timeout", "timeout"}


@dataclass(frozen=True)
class UpstreamConfig:
    url: str
    #: Name of the environment variable holding this upstream's API key (sent as Bearer).
    api_key_env: str | None = None


@dataclass(frozen=True)
class RemoteConfig:
    name: str
    upstreams: tuple[UpstreamConfig, ...]
    #: Seconds between active health checks (GET <url>/models) of every upstream.
    health_interval: float = 10.0
    balance: str = "least-busy"
    #: Seconds a failed upstream is left alone; doubles on each further failure up to
    #: max_cooldown. A successful health check ends it early.
    cooldown: float = 5.0
    max_cooldown: float = 60.0
    connect_timeout: float = 5.0
    #: Longest silence (seconds) while waiting for an upstream's bytes.
    timeout: float = 600.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _seconds(value: Any, where: str) -> float:
    from ...config_values import parse_duration  # the one duration syntax of the settings

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{where}: must be a positive duration such as 10s, got {value!r}")
    return seconds


def check_url(url: Any, where: str) -> str:
    """An upstream base URL: http(s), with a host, no query; the trailing slash dropped."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{where}: expected an http(s) URL such as http://gpu-1:8000/v1")
    text = url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError(f"{where}: {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where}: {url!r} is not an http(s) URL with a host "
                         "(e.g. http://gpu-1:8000/v1)")
    if parts.query or parts.fragment:
        raise ValueError(f"{where}: {url!r} must not have a query or fragment")
    return text


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"engines: {name!r} is not a valid engine name (lower-case letters, "
                         "digits, '.', '_' and '-')")
    if name == LOCAL_ENGINE:
        raise ValueError(f"engines: {LOCAL_ENGINE} is the local engine and cannot be remote")
    return name


def _upstream(raw: Any, where: str, default_key_env: str | None) -> UpstreamConfig:
    if isinstance(raw, str):
        return UpstreamConfig(check_url(raw, where), default_key_env)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a URL or a mapping with url (and api_key_env)")
    unknown = set(raw) - {"url", "api_key_env"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    key_env = raw.get("api_key_env", default_key_env)
    if key_env is not None and not isinstance(key_env, str):
        raise ValueError(f"{where}.api_key_env: expected the name of an environment variable")
    return UpstreamConfig(check_url(raw.get("url"), f"{where}.url"), key_env or None)


def parse_engine(name: str, raw: Any) -> RemoteConfig:
    """One engine's settings from the YAML mapping (or a bare list of upstreams)."""
    name = check_name(name)
    where = f"engines.{name}"
    if isinstance(raw, list | str):
        raw = {"upstreams": raw}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping with upstreams")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(_KEYS))})")
    ups = raw.get("upstreams")
    if isinstance(ups, str):
        ups = [u for u in ups.split(",") if u.strip()]
    if not isinstance(ups, list) or not ups:
        raise ValueError(f"{where}.upstreams: expected a non-empty list of upstream URLs")
    key_env = raw.get("api_key_env")
    if key_env is not None and not isinstance(key_env, str):
        raise ValueError(f"{where}.api_key_env: expected the name of an environment variable")
    upstreams = tuple(_upstream(u, f"{where}.upstreams[{i}]", key_env)
                      for i, u in enumerate(ups))
    if len({u.url for u in upstreams}) != len(upstreams):
        raise ValueError(f"{where}.upstreams: the same URL is listed twice")
    balance = raw.get("balance", "least-busy")
    if balance not in BALANCE_MODES:
        raise ValueError(f"{where}.balance: expected one of {', '.join(BALANCE_MODES)}")
    options = {key: _seconds(raw[key], f"{where}.{key}")
               for key in ("health_interval", "cooldown", "max_cooldown", "connect_timeout",
                           "timeout") if raw.get(key) is not None}
    config = RemoteConfig(name, upstreams, balance=balance, **options)
    if config.max_cooldown < config.cooldown:
        raise ValueError(f"{where}.max_cooldown: must not be shorter than cooldown")
    return config


def parse_engines(raw: Any) -> dict[str, RemoteConfig]:
    """The whole `engines:` section; already-parsed configs pass through unchanged."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError("engines: expected a mapping of engine name to its settings")
    return {str(name): cfg if isinstance(cfg, RemoteConfig) else parse_engine(str(name), cfg)
            for name, cfg in raw.items()}


def from_environment(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """`DMR_ENGINE_VLLM=http://a/v1,http://b/v1` -> {"vllm": {"upstreams": [...]}}.

    The name is the rest of the variable, lower-cased (`DMR_ENGINE_MY_GPU` is `my_gpu`)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX) and value.strip():
            urls = [u.strip() for u in value.split(",") if u.strip()]
            out[key[len(ENV_PREFIX):].lower()] = {"upstreams": urls}
    return out


def merge(file_section: Any, env_section: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The YAML section with each environment engine's upstreams put over it."""
    if file_section is None:
        file_section = {}
    if not isinstance(file_section, Mapping):
        raise ValueError("engines: expected a mapping of engine name to its settings")
    merged: dict[str, Any] = {}
    for name, raw in file_section.items():
        merged[name] = dict(raw) if isinstance(raw, Mapping) else {"upstreams": raw}
    for name, raw in env_section.items():
        merged[name] = {**merged.get(name, {}), **raw}
    return merged
