"""HTTP over a Unix socket for `requests`, so `MODEL_RUNNER_HOST=unix:///path` works for the
`dmr` client commands as it does for Docker's CLI. Every request of a session the adapter is
mounted on goes to the one socket; the URL's host only fills the `Host` header."""

from __future__ import annotations

import socket
from typing import Any

import requests
import urllib3
from urllib3.connection import HTTPConnection
from urllib3.exceptions import NewConnectionError

#: The URL the session uses for a socket (its Host header, `localhost`, passes the allow-list).
SOCKET_BASE = "http://localhost"


class _UnixConnection(HTTPConnection):
    def __init__(self, *args: Any, socket_path: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if isinstance(self.timeout, int | float) else None)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise NewConnectionError(self, f"cannot connect to {self.socket_path}: {exc}") \
                from exc
        return sock


class _UnixPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _UnixConnection

    def __init__(self, socket_path: str, **kwargs: Any):
        super().__init__("localhost", **kwargs)
        self.conn_kw["socket_path"] = socket_path


class UnixAdapter(requests.adapters.HTTPAdapter):
    """A transport adapter whose every connection is to `socket_path`."""

    def __init__(self, socket_path: str):
        super().__init__()
        self._pool = _UnixPool(socket_path, maxsize=4)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return self._pool

    def get_connection(self, url, proxies=None):  # requests < 2.32
        return self._pool

    def request_url(self, request, proxies):
        return request.path_url  # never a proxy's absolute form: the socket is the server

    def close(self) -> None:
        self._pool.close()
        super().close()


def session_for(socket_path: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no HTTP(S)_PROXY for a socket
    session.mount(SOCKET_BASE, UnixAdapter(socket_path))
    return session
