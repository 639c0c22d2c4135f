"""A remote engine: OpenAI-compatible upstreams (vLLM, SGLang, llama-server, another DMR) used
as replicas of one engine.

It works at the HTTP level and never loads anything locally: `forward` picks an upstream
(least busy, or round-robin, among those not cooling down and serving the model), sends the
request, and hands back the upstream's answer once its first byte has arrived. A request that
fails before that (connection refused or dropped, timeout, 502/504, or 429/503 "busy") is sent
to the next replica; the client sees nothing of it. After the first byte a failure can no longer
be hidden: `Forwarded.chunks` raises `UpstreamBroken`, which the dialect reports in-band.
What the bytes mean (SSE, JSON, the dialects) is the API layer's business.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

from ...core.errors import DMRError, ErrorKind, Overloaded
from .config import RemoteConfig
from .upstream import Upstream, UpstreamModel, model_key

log = logging.getLogger(__name__)

#: Statuses that mean "this replica cannot take the request now": try the next one.
BUSY_STATUSES = frozenset({429, 503})
GATEWAY_STATUSES = frozenset({502, 504})


class NoUpstream(Overloaded):
    """Every upstream of the engine is down or cooling down."""

    def __init__(self, engine: str, reasons: list[str], retry_after: float):
        detail = "; ".join(reasons) if reasons else "none is configured"
        super().__init__(f"remote engine {engine}: no upstream could take the request "
                         f"({detail}); retry later", retry_after=max(1, round(retry_after)))


class UpstreamBroken(DMRError):
    """The upstream failed after its answer had started (reported in-band)."""

    status = 502
    kind = ErrorKind.SERVER_ERROR


class _GatewayError(Exception):
    """A 502/504: the upstream is a proxy whose backend is gone; treated as unreachable."""


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return float(response.headers.get("retry-after", default))
    except ValueError:
        return default


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class Forwarded:
    """An upstream's answer whose first bytes have arrived. Iterate `chunks()` once (the
    whole body of a non-streamed answer, else the chunks as the upstream sends them) and
    `close()` it: closing frees the upstream connection and its in-flight slot."""

    def __init__(self, upstream: Upstream, response: httpx.Response, first: bytes,
                 rest: Iterator[bytes] | None):
        self.upstream = upstream
        self.status = response.status_code
        self.headers = response.headers
        self._response = response
        self._first = first
        self._rest = rest
        self._closed = False
        self._lock = threading.Lock()

    @property
    def streaming(self) -> bool:
        return self._rest is not None

    def body(self) -> bytes:
        """The whole body of an answer that was read before it was handed over."""
        return self._first

    def chunks(self) -> Iterator[bytes]:
        try:
            if self._first:
                yield self._first
            if self._rest is None:
                return
            try:
                for chunk in self._rest:
                    if chunk:
                        yield chunk
            except httpx.HTTPError as exc:
                reason = _describe(exc)
                self.upstream.failed(f"broke mid-answer: {reason}")
                raise UpstreamBroken(f"upstream {self.upstream.url} failed in the middle of "
                                     f"its answer ({reason})") from None
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._response.close()
        finally:
            self.upstream.end()


class RemoteEngine:
    """Replicas behind one engine name. `start()` begins the health checks."""

    def __init__(self, config: RemoteConfig, *, transport: httpx.BaseTransport | None = None):
        self.config = config
        self.name = config.name
        self.upstreams = [Upstream(u, config.cooldown, config.max_cooldown)
                          for u in config.upstreams]
        self._client = httpx.Client(
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            transport=transport)
        self._lock = threading.Lock()
        self._turn = 0
        self._stop = threading.Event()
        self._checker: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._checker is None:
            self._checker = threading.Thread(target=self._health_loop, daemon=True,
                                             name=f"health-{self.name}")
            self._checker.start()

    def close(self) -> None:
        self._stop.set()
        self._client.close()

    # ------------------------------------------------------------------ health

    def _health_loop(self) -> None:
        while not self._stop.is_set():
            for upstream in self.upstreams:
                if self._stop.is_set():
                    return
                try:
                    self.check(upstream)
                except Exception:  # e.g. the client closed under it at shutdown
                    if self._stop.is_set():
                        return
                    log.exception("health check of %s failed", upstream.url)
            self._stop.wait(self.config.health_interval)

    def check(self, upstream: Upstream) -> bool:
        """One active health check: GET <url>/models (which also lists its models)."""
        started = time.monotonic()
        limit = min(self.config.connect_timeout, max(1.0, self.config.health_interval))
        try:
            response = self._client.get(f"{upstream.url}/models", headers=upstream.headers(),
                                        timeout=httpx.Timeout(max(limit, 5.0), connect=limit))
        except httpx.HTTPError as exc:
            upstream.check_failed(f"health check: {_describe(exc)}")
            return False
        latency = time.monotonic() - started
        if response.status_code != 200:
            hint = " (check api_key_env)" if response.status_code in (401, 403) else ""
            upstream.check_failed(f"health check: HTTP {response.status_code}{hint}")
            return False
        try:
            data = response.json().get("data")
            models = [UpstreamModel(str(m["id"]), m.get("owned_by"), m.get("created"), m)
                      for m in data if isinstance(m, dict) and m.get("id")]
        except (ValueError, AttributeError, TypeError):
            upstream.check_failed("health check: GET /models did not answer an OpenAI list")
            return False
        upstream.checked(latency, models)
        return True

    def refresh(self) -> None:
        """Check every upstream whose model list is not known yet (before a first listing)."""
        for upstream in self.upstreams:
            if upstream.models is None:
                self.check(upstream)

    # ------------------------------------------------------------------ models

    def models(self) -> list[tuple[UpstreamModel, list[str]]]:
        """Each model any upstream serves, with the URLs of the upstreams serving it."""
        if all(u.models is None for u in self.upstreams):
            self.refresh()
        seen: dict[str, tuple[UpstreamModel, list[str]]] = {}
        for upstream in self.upstreams:
            for model in upstream.models or []:
                entry = seen.setdefault(model.id, (model, []))
                entry[1].append(upstream.url)
        return list(seen.values())

    def serves(self, name: str) -> bool:
        key = model_key(name)
        return any(u.serves(key) for u in self.upstreams)

    # ------------------------------------------------------------------ selection

    def _take(self, key: str | None, tried: set[int]) -> Upstream | None:
        """The best upstream not tried yet, its in-flight count already raised."""
        now = time.monotonic()
        with self._lock:
            pool = [u for i, u in enumerate(self.upstreams) if i not in tried]
            if key is not None:
                serving = [u for u in pool if u.serves(key) is not False]
                pool = serving or pool
            ready = [u for u in pool if u.available(now)]
            if not ready and pool:
                # Every replica left is cooling down: rather than refuse, try the one whose
                # cooldown ends first (a dead one refuses fast; a recovered one answers).
                ready = [min(pool, key=lambda u: u.cooldown_left(now))]
            if not ready:
                return None
            self._turn += 1
            shift = self._turn % len(ready)
            ready = ready[shift:] + ready[:shift]
            if self.config.balance == "least-busy":
                ready.sort(key=lambda u: u.in_flight)  # stable: the rotation breaks ties
            chosen = ready[0]
            chosen.begin()
            return chosen

    # ------------------------------------------------------------------ forwarding

    def forward(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, query: str = "",
                model: str | None = None,
                respell: Callable[[str], bytes] | None = None) -> Forwarded:
        """Send the request to the best upstream, moving on to the next replica while nothing
        has been received; raises NoUpstream when every replica failed or is cooling down.

        `respell(name)` returns the body with the model named as an upstream spells it; it
        is called when the client's spelling differs (e.g. `org/repo` vs `Org/Repo`)."""
        key = model_key(model) if model else None
        tried: set[int] = set()
        reasons: list[str] = []
        last_busy: Forwarded | None = None
        while True:
            upstream = self._take(key, tried)
            if upstream is None:
                break
            tried.add(self.upstreams.index(upstream))
            payload = body
            if model and respell is not None:
                spelled = upstream.spelling(model)
                if spelled is not None and spelled != model:
                    payload = respell(spelled)
            answer = self._attempt(upstream, method, path, payload, headers, query, reasons)
            if answer is None:
                continue
            if answer.status in BUSY_STATUSES and len(tried) < len(self.upstreams):
                if last_busy is not None:
                    last_busy.close()
                last_busy = answer
                continue
            if last_busy is not None:
                last_busy.close()
            return answer
        if last_busy is not None:
            return last_busy  # every replica is busy: pass the last "busy" answer on
        waits = [u.cooldown_left() for u in self.upstreams]
        if not reasons:
            reasons = [f"{u.url}: {u.last_error or 'cooling down'}" for u in self.upstreams]
        raise NoUpstream(self.name, reasons, min(waits) if waits else 1.0)

    def _attempt(self, upstream: Upstream, method: str, path: str, body: bytes | None,
                 headers: Mapping[str, str] | None, query: str,
                 reasons: list[str]) -> Forwarded | None:
        """One try on one upstream; None (and the upstream marked) if it failed early."""
        url = f"{upstream.url}/{path.lstrip('/')}"
        if query:
            url = f"{url}?{query}"
        started = time.monotonic()
        response = None
        try:
            request = self._client.build_request(
                method, url, content=body,
                headers={**(headers or {}), **upstream.headers(), "Accept-Encoding": "identity"})
            response = self._client.send(request, stream=True)
            if response.status_code in GATEWAY_STATUSES:  # a proxy in front of a dead backend
                raise _GatewayError(f"HTTP {response.status_code} from a gateway")
            streaming = response.headers.get("content-type", "").startswith("text/event-stream")
            if streaming:
                rest = response.iter_raw()
                first = next(rest, b"")
            else:
                first, rest = response.read(), None
        except (httpx.HTTPError, _GatewayError) as exc:
            if response is not None:
                response.close()
            reason = _describe(exc)
            upstream.failed(reason, retried=True)
            upstream.end()
            reasons.append(f"{upstream.url}: {reason}")
            log.warning("remote engine %s: %s %s failed (%s); trying another replica",
                        self.name, method, url, reason)
            return None
        if response.status_code in BUSY_STATUSES:
            upstream.busy(_retry_after(response, self.config.cooldown))
            reasons.append(f"{upstream.url}: busy (HTTP {response.status_code})")
        else:
            upstream.succeeded(time.monotonic() - started)
        return Forwarded(upstream, response, first, rest)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        ups = [u.snapshot() for u in self.upstreams]
        return {"engine": self.name, "balance": self.config.balance,
                "health_interval": self.config.health_interval,
                "healthy": sum(1 for u in ups if u["state"] == "up"),
                "upstreams": ups}
