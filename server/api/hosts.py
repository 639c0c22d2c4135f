"""The Host allow-list (DNS rebinding), and what the Unix socket transport changes.

A web page can point its own domain at 127.0.0.1 (DNS rebinding) and then read the server as
same-origin: the browser sends no `Origin` on same-origin GETs, so CORS never runs, but it
does send the page's own name in `Host`. Ollama shipped this bug (CVE-2024-28224) and fixed
it the same way: only names no web page can be served from are accepted.

Accepted `Host` values, with any port:
- loopback: `localhost`, any 127.0.0.0/8 address, `[::1]`;
- the names containers use to reach the host (`host.docker.internal`, DMR's
  `model-runner.docker.internal`);
- the address (or name) the server is bound to; on a wildcard bind (`0.0.0.0`, `::`) every
  IP literal (an address cannot be rebound, and behind Docker's port mapping or NAT the
  address a client dials is not one of ours) and this machine's host name;
- `allowed_hosts` entries: `name`, `name:port`, `.suffix` (the name and its subdomains), or `*`
  (no check at all).
A request without `Host` (HTTP/1.0) comes from no browser and passes.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: Names every request may use besides loopback: the ways containers reach the host.
CONTAINER_HOSTS = ("host.docker.internal", "model-runner.docker.internal")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})

_PORT = re.compile(r"^[0-9]{1,5}$")


@dataclass(frozen=True)
class HostPort:
    host: str  # lower-cased, no trailing dot, IPv6 without brackets
    port: int | None


def parse_host(value: str) -> HostPort | None:
    """`name`, `name:port`, `1.2.3.4:port`, `[v6]:port` from a Host header; None if malformed."""
    text = value.strip().lower()
    if not text:
        return None
    port_text = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            return None
    else:
        host, sep, port_text = text.rpartition(":") if ":" in text else (text, "", None)
        if ":" in host:  # an IPv6 address without brackets is not a valid Host
            return None
    if port_text is not None and not _PORT.match(port_text):
        return None
    if host.endswith("."):  # the fully qualified spelling, `localhost.`
        host = host[:-1]
    if not host or any(c in host for c in "/\\@ \t?#,"):
        return None
    return HostPort(host, int(port_text) if port_text is not None else None)


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


class HostMatcher:
    """Decides whether a request's `Host` header names this server, not someone's web page."""

    def __init__(self, bind_host: str = "127.0.0.1", allowed: Iterable[str] = ()):
        self.any = False
        self._names: set[str] = {"localhost", *CONTAINER_HOSTS}
        self._ports: set[tuple[str, int]] = set()
        self._suffixes: list[str] = []
        self._any_ip = False
        bind = bind_host.strip().lower()
        if bind in WILDCARD_BINDS:
            self._any_ip = True
            name = socket.gethostname().lower()
            self._names.update({name, f"{name}.local"} if name else set())
        else:
            parsed = parse_host(bind if not (":" in bind and not bind.startswith("["))
                                else f"[{bind}]")
            if parsed is not None:
                self._names.add(_canonical(parsed.host))
        for entry in allowed:
            self._add(entry)

    def _add(self, entry: str) -> None:
        text = entry.strip().lower()
        if text == "*":
            self.any = True
            return
        if text.startswith(".") and len(text) > 1 and parse_host(text[1:]) is not None:
            self._suffixes.append(text)
            return
        parsed = parse_host(text)
        if parsed is None:
            raise ValueError(f"invalid allowed host {entry!r}: expected '*', a name, "
                             "name:port, [IPv6]:port or .suffix")
        host = _canonical(parsed.host)
        if parsed.port is None:
            self._names.add(host)
        else:
            self._ports.add((host, parsed.port))

    def allows(self, header: str | None) -> bool:
        if self.any or header is None:
            return True
        parsed = parse_host(header)
        if parsed is None:
            return False
        host = _canonical(parsed.host)
        ip = ip_literal(host)
        if ip is not None and (ip.is_loopback or self._any_ip):
            return True
        if host in self._names or (host, parsed.port) in self._ports:
            return True
        return any(host.endswith(s) or host == s[1:] for s in self._suffixes)


def _canonical(host: str) -> str:
    """One spelling per IP address (`0:0::1` is `::1`); names unchanged."""
    ip = ip_literal(host)
    return str(ip) if ip is not None else host


# ------------------------------------------------------------------------ the Unix socket

#: Docker Desktop serves DMR on its own socket under this prefix (`/exp/vDD4.40/engines/...`).
DESKTOP_PREFIX = re.compile(r"^/exp/vDD[0-9][0-9.]*(?=/)")


def via_unix_socket(environ: dict[str, Any]) -> bool:
    """True when Gunicorn accepted this request on a Unix socket."""
    sock = environ.get("gunicorn.socket")
    return getattr(sock, "family", None) == socket.AF_UNIX


class DesktopPrefix:
    """WSGI middleware: on the Unix socket, `/exp/vDD4.40/...` is served as `/...`, so the
    curl examples written for Docker Desktop's socket work unchanged."""

    def __init__(self, app: Callable[..., Any]):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if via_unix_socket(environ):
            path = environ.get("PATH_INFO", "")
            match = DESKTOP_PREFIX.match(path)
            if match:
                environ["PATH_INFO"] = path[match.end():]
        return self.app(environ, start_response)
