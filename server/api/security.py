"""The Host allow-list, CORS and API keys, checked once for every route before any dialect runs.

The Host check comes first (hosts.py: no DNS-rebinding page gets past it, whatever its
`Origin`).

DMR matches origins as exact strings, so its own `http://localhost:*` never matches a real
port; here a `:*` pattern matches any port. Browsers on loopback origins are allowed by default
(a local web UI next to the server), any other origin needs `cors_origins`. A request without
an `Origin` header is not a browser's cross-origin request and passes. API keys are optional;
with keys set, every route but `/health` (and CORS preflights, which browsers send without
credentials) needs one.

A rejection is raised as a core error (Forbidden, Unauthorized), so the blueprint the path
matched answers it in its dialect's shape, as it answers any other error; a path no route
serves is answered by the dialect that claimed it (api/common.py's fallback).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from ..core.errors import DMRError, Forbidden, Unauthorized
from .common import install_fallback
from .hosts import DesktopPrefix, HostMatcher

#: Loopback origins on any port, over http and https: always allowed.
DEFAULT_ORIGINS = tuple(f"{scheme}://{host}:*" for host in ("localhost", "127.0.0.1", "[::1]")
                        for scheme in ("http", "https"))
ALLOWED_METHODS = "GET, POST, DELETE"
#: Paths open without an API key or an allowed Host (probes from load balancers, container
#: health checks and `dmr` itself); they answer nothing but "up".
OPEN_PATHS = frozenset({"/health"})
#: The dashboard's static files (`/ui`, `/ui/app.js`, ...) need no key: a browser cannot send
#: one when it opens a page, and they hold no data (every byte is the package's public code);
#: all the page shows comes from API calls that send the key. The Host check still applies.
UI_PREFIX = "/ui"


def needs_key(path: str) -> bool:
    if path in OPEN_PATHS:
        return False
    return not (path == UI_PREFIX or path.startswith(UI_PREFIX + "/"))

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int | None  # None in a pattern = any port


def _parse(origin: str, *, pattern: bool = False) -> _Origin | None:
    """scheme://host[:port] lower-cased, the default port made explicit; None if malformed."""
    text = origin.strip().lower().rstrip("/")
    any_port = pattern and text.endswith(":*")
    if any_port:
        text = text[:-2]
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        return None
    if any_port and port is not None:
        return None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if any_port:
        return _Origin(parts.scheme, host, None)
    return _Origin(parts.scheme, host, port if port is not None else _DEFAULT_PORTS[parts.scheme])


class OriginMatcher:
    """Decides whether a browser origin may call the server.

    Patterns: `*` (every origin), `scheme://host` (that host on the scheme's default port),
    `scheme://host:port`, and `scheme://host:*` (any port, or none)."""

    def __init__(self, patterns: Iterable[str] = (), *, defaults: bool = True):
        self.any = False
        self._patterns: list[_Origin] = []
        for text in [*(DEFAULT_ORIGINS if defaults else ()), *patterns]:
            if text.strip() == "*":
                self.any = True
                continue
            parsed = _parse(text, pattern=True)
            if parsed is None:
                raise ValueError(f"invalid CORS origin {text!r}: expected '*' or "
                                 "scheme://host[:port|:*]")
            self._patterns.append(parsed)

    def allows(self, origin: str) -> bool:
        if self.any:
            return True
        parsed = _parse(origin)
        if parsed is None:
            return False
        return any(p.scheme == parsed.scheme and p.host == parsed.host
                   and p.port in (None, parsed.port) for p in self._patterns)


class KeyChecker:
    """Constant-time check of a request's key against every configured key."""

    def __init__(self, keys: Iterable[str]):
        self._keys = [k.encode() for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def valid(self, key: str) -> bool:
        given = key.encode()
        ok = False
        for k in self._keys:  # no early exit: timing says nothing about which key matched
            ok |= hmac.compare_digest(given, k)
        return ok


def request_key() -> str | None:
    """The key from `Authorization: Bearer <key>` or `x-api-key: <key>`."""
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key", "").strip() or None


class KeyRejected(Unauthorized):
    """No valid API key; the answer asks for a bearer token (`WWW-Authenticate`)."""

    challenge = "Bearer"


def is_loopback(host: str) -> bool:
    """True when a bind address only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_warning(host: str, api_keys: Iterable[str]) -> str | None:
    """What `dmr serve` prints when it listens beyond loopback with no API key."""
    if is_loopback(host) or any(api_keys):
        return None
    return (f"WARNING: serving on {host} without API keys (--no-auth): anyone who can reach "
            "this address can use and manage the models and read the recorded requests. Drop "
            "--no-auth to require a generated key, set api_keys (DMR_API_KEYS), or bind to "
            "127.0.0.1.")


def _discard_body() -> None:
    """Read the unread request body before answering early. Left in the socket, it wakes
    Gunicorn's keep-alive poller, whose thread then blocks reading a next request that never
    comes, and a SIGTERM waits the whole graceful timeout for it."""
    try:
        while request.stream.read(64 * 1024):
            pass
    except (HTTPException, OSError):  # too large or cut off: nothing more to save
        pass


def _reject(exc: DMRError) -> NoReturn:
    """Refuse the request; the blueprint it matched answers in its dialect's shape."""
    _discard_body()
    raise exc


def _preflight() -> Response:
    response = Response(status=204)
    del response.headers["Content-Type"]
    response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    response.headers["Access-Control-Allow-Headers"] = (
        request.headers.get("Access-Control-Request-Headers") or "*")
    response.headers["Access-Control-Max-Age"] = "600"
    return response


def host_message(host: str) -> str:
    shown = host if len(host) <= 100 else host[:100] + "..."
    return (f"Host {shown!r} not allowed: this server answers only to loopback names, its bind "
            "address and allowed_hosts (DMR_ALLOWED_HOSTS); see docs/security.md")


def register(app: Flask, origins: Iterable[str], api_keys: Iterable[str], *,
             bind_host: str = "127.0.0.1", allowed_hosts: Iterable[str] = ()) -> None:
    """Install the checks as the app's first before_request hook and the CORS headers after."""
    matcher = OriginMatcher(origins)
    keys = KeyChecker(api_keys)
    hosts = HostMatcher(bind_host, allowed_hosts)

    def check() -> Response | None:
        host = request.environ.get("HTTP_HOST")
        if not hosts.allows(host) and request.path not in OPEN_PATHS:
            _reject(Forbidden(host_message(host or "")))
        origin = request.headers.get("Origin")
        if origin is not None and not matcher.allows(origin):
            _reject(Forbidden("Origin not allowed"))
        if (origin is not None and request.method == "OPTIONS"
                and "Access-Control-Request-Method" in request.headers):
            # Browsers send preflights without credentials; an unknown path falls to its 404.
            return _preflight() if request.url_rule is not None else None
        if keys.enabled and needs_key(request.path):
            key = request_key()
            if key is None or not keys.valid(key):
                message = ("invalid API key" if key is not None else
                           "missing API key: send 'Authorization: Bearer <key>' or "
                           "'x-api-key: <key>'")
                _reject(KeyRejected(message, code="invalid_api_key"))
        return None

    def cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if (origin is None or not matcher.allows(origin)
                or not hosts.allows(request.environ.get("HTTP_HOST"))):
            return response
        response.headers["Access-Control-Allow-Origin"] = origin  # set, never added twice
        response.headers["Access-Control-Allow-Credentials"] = "true"
        vary = [v.strip() for v in response.headers.get("Vary", "").split(",") if v.strip()]
        if "origin" not in (v.lower() for v in vary):
            response.headers["Vary"] = ", ".join([*vary, "Origin"])
        return response

    install_fallback(app)
    app.before_request_funcs.setdefault(None, []).insert(0, check)
    app.after_request(cors_headers)
    app.wsgi_app = DesktopPrefix(app.wsgi_app)  # Docker Desktop's socket paths, socket only
