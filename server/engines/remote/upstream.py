"""One upstream of a remote engine: its health, its load, and the models it serves.

The state changes on two paths: active health checks (GET <url>/models every
`health_interval`, which also refreshes the model list) and the outcome of real requests. A
failure cools the upstream down for `cooldown` seconds, doubled on each further failure up to
`max_cooldown`; a successful check or request ends the cooldown. An upstream whose cooldown has
run out is tried again by the next request (if that fails too, the request moves on to another
replica before anything was sent to the client).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ...store import reference
from .config import UpstreamConfig

#: Weight of the newest sample in the moving averages of latency.
_EWMA = 0.3


def model_key(name: str) -> str:
    """DMR's normalisation of a model name (`Org/Repo` -> `org/repo:latest`), so a client may
    spell a remote model either way; names DMR cannot parse are only lower-cased."""
    try:
        return str(reference.parse(name))
    except Exception:  # e.g. a llama-server file path: keep it as it is
        return name.strip().lower()


@dataclass
class UpstreamModel:
    id: str
    owned_by: str | None = None
    created: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class Upstream:
    """Mutable state of one upstream; every method is thread-safe."""

    def __init__(self, config: UpstreamConfig, cooldown: float, max_cooldown: float):
        self.url = config.url
        self.api_key_env = config.api_key_env
        self._base_cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._lock = threading.Lock()
        #: None until the first check or request says otherwise.
        self.healthy: bool | None = None
        self.in_flight = 0
        self.failures = 0  # consecutive
        self.cooldown_until = 0.0  # monotonic
        self.last_error: str | None = None
        self.last_check: float | None = None  # wall clock
        self.check_latency: float | None = None  # seconds, last health check
        self.ttfb: float | None = None  # seconds to the first byte of answers, averaged
        self.requests = 0
        self.failed_requests = 0
        self.retried = 0  # requests this upstream failed that moved on to another one
        self.models: list[UpstreamModel] | None = None

    # ------------------------------------------------------------------ credentials

    def headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    # ------------------------------------------------------------------ selection

    def available(self, now: float) -> bool:
        with self._lock:
            return now >= self.cooldown_until

    def cooldown_left(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            return max(0.0, self.cooldown_until - now)

    def serves(self, key: str) -> bool | None:
        """Whether this upstream lists the model (normalised key); None when not known yet."""
        with self._lock:
            models = self.models
        if models is None:
            return None
        return any(model_key(m.id) == key or m.id == key for m in models)

    def spelling(self, name: str) -> str | None:
        """The upstream's own spelling of a model the client named either way."""
        key = model_key(name)
        with self._lock:
            models = self.models or []
        for m in models:
            if m.id == name:
                return m.id
        for m in models:
            if model_key(m.id) == key:
                return m.id
        return None

    # ------------------------------------------------------------------ outcomes

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.requests += 1

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def succeeded(self, ttfb: float | None = None) -> None:
        with self._lock:
            self.healthy = True
            self.failures = 0
            self.cooldown_until = 0.0
            self.last_error = None
            if ttfb is not None:
                self.ttfb = ttfb if self.ttfb is None else (
                    _EWMA * ttfb + (1 - _EWMA) * self.ttfb)

    def failed(self, error: str, *, request: bool = True, retried: bool = False,
               retry_after: float | None = None) -> None:
        """Mark the upstream down and cool it down (`retry_after` overrides the backoff);
        `retried`: the request it failed moved on to another replica."""
        with self._lock:
            self.healthy = False
            self.failures += 1
            if request:
                self.failed_requests += 1
            if retried:
                self.retried += 1
            self.last_error = error
            if retry_after is not None:
                delay = min(max(retry_after, 0.0), self._max_cooldown)
            else:
                delay = min(self._base_cooldown * 2 ** (self.failures - 1), self._max_cooldown)
            self.cooldown_until = max(self.cooldown_until, time.monotonic() + delay)

    def busy(self, retry_after: float) -> None:
        """The upstream answered "overloaded": alive, but leave it alone for a moment."""
        with self._lock:
            self.cooldown_until = max(self.cooldown_until,
                                      time.monotonic() + min(retry_after, self._max_cooldown))

    def checked(self, latency: float, models: list[UpstreamModel]) -> None:
        with self._lock:
            self.last_check = time.time()
            self.check_latency = latency
            self.models = models
        self.succeeded()

    def check_failed(self, error: str) -> None:
        with self._lock:
            self.last_check = time.time()
            self.check_latency = None
        self.failed(error, request=False)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view for /engines/remote, `dmr status` and /metrics."""
        now = time.monotonic()
        with self._lock:
            models = [m.id for m in self.models] if self.models is not None else None
            return {
                "url": self.url,
                "healthy": self.healthy,
                "state": ("cooling down" if now < self.cooldown_until
                          else "up" if self.healthy else "unknown" if self.healthy is None
                          else "retrying"),
                "latency_ms": None if self.check_latency is None
                else round(self.check_latency * 1000, 1),
                "ttfb_ms": None if self.ttfb is None else round(self.ttfb * 1000, 1),
                "in_flight": self.in_flight,
                "requests": self.requests,
                "failed_requests": self.failed_requests,
                "retried_requests": self.retried,
                "consecutive_failures": self.failures,
                "cooldown_seconds": round(max(0.0, self.cooldown_until - now), 1),
                "last_error": self.last_error,
                "last_check": self.last_check,
                "models": models,
            }
