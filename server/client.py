"""HTTP client for a running server (what the `dmr` commands talk to).

The server is `MODEL_RUNNER_HOST` (DMR's variable), default http://127.0.0.1:12434, or
`unix:///path/to.sock` for a server's Unix socket. The API key is `DMR_API_KEY`; without it, a
local server's generated key (in the models directory) is used. Every failure becomes a
ClientError with one line a person can act on.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import requests

DEFAULT_HOST = "http://127.0.0.1:12434"
UNIX_SCHEME = "unix://"


class ClientError(Exception):
    """One line saying what went wrong."""


def base_url() -> str:
    host = (os.environ.get("MODEL_RUNNER_HOST") or DEFAULT_HOST).strip()
    if host.startswith(UNIX_SCHEME):
        return host
    host = host.rstrip("/")
    return host if "://" in host else f"http://{host}"


def api_key(base: str) -> str | None:
    """`DMR_API_KEY`, else the key a server on this machine generated (never sent anywhere
    else: it guards this machine's server)."""
    key = os.environ.get("DMR_API_KEY", "").strip()
    if key:
        return key
    from .config import default_models_dir
    from .keyfile import read_key

    if not base.startswith(UNIX_SCHEME) and not _loopback(urlsplit(base).hostname or ""):
        return None
    return read_key(os.environ.get("MODELS_PATH") or default_models_dir())


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _path(name: str) -> str:
    return quote(name.strip(), safe="/:@")


class Client:
    def __init__(self, base: str | None = None, timeout: float = 30):
        target = base or base_url()
        self.shown = target
        if target.startswith(UNIX_SCHEME):
            from .unix_http import SOCKET_BASE, session_for

            self.base = SOCKET_BASE
            self._session = session_for(target[len(UNIX_SCHEME):])
        else:
            self.base = target.rstrip("/")
            self._session = requests.Session()
        self.timeout = timeout
        key = api_key(target)
        if key:
            self._session.headers["Authorization"] = f"Bearer {key}"

    # ------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, *, stream: bool = False, ok=(200,),
                 **kwargs: Any) -> requests.Response:
        try:
            response = self._session.request(method, self.base + path, stream=stream,
                                             timeout=None if stream else self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise ClientError(f"cannot reach the model runner at {self.shown} (is `dmr serve` "
                              "running? set MODEL_RUNNER_HOST to point elsewhere)") from exc
        except requests.RequestException as exc:
            raise ClientError(f"request to {self.shown} failed: {exc}") from exc
        if response.status_code not in ok:
            raise ClientError(_error_text(response))
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(f"{path}: the server did not answer JSON") from exc

    def _progress(self, response: requests.Response) -> Iterator[dict[str, Any]]:
        """DMR progress lines; an error line becomes a ClientError."""
        with response:
            for raw in response.iter_lines():
                if not raw.strip():
                    continue
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if message.get("type") == "error":
                    raise ClientError(message.get("message", "failed").removeprefix("Error: "))
                yield message

    # ------------------------------------------------------------------ models

    def models(self) -> list[dict[str, Any]]:
        return self._json("GET", "/models")

    def model(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/models/{_path(name)}")

    def openai_model(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/engines/v1/models/{_path(name)}")

    def find(self, name: str) -> dict[str, Any] | None:
        response = self._request("GET", f"/models/{_path(name)}", ok=(200, 404))
        return response.json() if response.status_code == 200 else None

    def pull(self, name: str, bearer_token: str | None = None) -> Iterator[dict[str, Any]]:
        body: dict[str, Any] = {"from": name}
        if bearer_token:
            body["bearer-token"] = bearer_token
        response = self._request("POST", "/models/create", json=body, stream=True,
                                 headers={"Accept": "application/json"})
        return self._progress(response)

    def push(self, name: str, bearer_token: str | None = None) -> Iterator[dict[str, Any]]:
        body = {"bearer-token": bearer_token} if bearer_token else None
        response = self._request("POST", f"/models/{_path(name)}/push", json=body, stream=True,
                                 headers={"Accept": "application/json"})
        return self._progress(response)

    def load(self, archive: Iterable[bytes]) -> list[dict[str, Any]]:
        response = self._request("POST", "/models/load", data=archive, stream=True,
                                 headers={"Accept": "application/json",
                                          "Content-Type": "application/x-tar"})
        return list(self._progress(response))

    def tag(self, source: str, target: str) -> dict[str, Any]:
        repo, tag = split_tag(target)
        return self._json("POST", f"/models/{_path(source)}/tag", ok=(201,),
                          params={"repo": repo, "tag": tag})

    def remove(self, name: str, force: bool = False) -> list[dict[str, str]]:
        return self._json("DELETE", f"/models/{_path(name)}",
                          params={"force": "true"} if force else None)

    def purge(self) -> None:
        self._request("DELETE", "/models/purge")

    # ------------------------------------------------------------------ engines

    def ps(self) -> list[dict[str, Any]]:
        return self._json("GET", "/engines/ps")

    def df(self) -> dict[str, Any]:
        return self._json("GET", "/engines/df")

    def status(self) -> dict[str, str]:
        return self._json("GET", "/engines/status")

    def remote_status(self) -> dict[str, Any]:
        """Each remote engine's upstreams ({} from a server without remote engines)."""
        try:
            return self._json("GET", "/engines/remote")
        except ClientError:  # Docker's DMR, or an older server: no such route
            return {}

    def version(self) -> dict[str, Any]:
        return self._json("GET", "/version")

    def unload(self, models: list[str], all_models: bool = False,
               backend: str | None = None) -> dict[str, Any]:
        return self._json("POST", "/engines/unload",
                          json={"all": all_models, "models": models, "backend": backend or ""})

    def configure(self, body: dict[str, Any]) -> str:
        """Configure a model; returns the server's notes (flags with no effect here)."""
        return self._request("POST", "/engines/_configure", json=body, ok=(200, 202)).text

    def configuration(self, model: str | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/engines/_configure",
                          params={"model": model} if model else None)

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/engines/requests", params={"model": model} if model else None)

    def follow_requests(self, model: str | None = None,
                        include_existing: bool = False) -> Iterator[tuple[str, str]]:
        """The recorder's SSE stream as (event, data) pairs, until the server ends it."""
        params = {k: v for k, v in (("model", model),
                                    ("include_existing", "true" if include_existing else None))
                  if v}
        response = self._request("GET", "/engines/requests", stream=True, params=params,
                                 headers={"Accept": "text/event-stream"})
        with response:
            event = ""
            for raw in response.iter_lines():
                line = raw.decode("utf-8", errors="replace")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    yield event, line[5:].strip()

    # ------------------------------------------------------------------ chat

    def chat(self, model: str, messages: list[dict[str, Any]],
             max_tokens: int | None = None) -> Iterator[tuple[str, str]]:
        """Stream an answer as ("content" | "reasoning", text) pieces."""
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        if max_tokens:
            body["max_tokens"] = max_tokens
        response = self._request("POST", "/engines/v1/chat/completions", stream=True,
                                 json=body)
        with response:
            for raw in response.iter_lines():
                line = raw.decode("utf-8", errors="replace")
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    raise ClientError(chunk["error"].get("message", "chat failed"))
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("reasoning_content"):
                        yield "reasoning", delta["reasoning_content"]
                    if delta.get("content"):
                        yield "content", delta["content"]


def split_tag(target: str) -> tuple[str, str]:
    """("repo", "tag") of a reference; the tag is after the last ':' past the last '/'."""
    slash, colon = target.rfind("/"), target.rfind(":")
    if colon > slash:
        return target[:colon], target[colon + 1:]
    return target, "latest"


def _error_text(response: requests.Response) -> str:
    """The one line of an error body: DMR's plain text, or an OpenAI/Ollama JSON error."""
    text = response.text.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            text = error["message"]
        elif isinstance(error, str):
            text = error
    first = text.splitlines()[0] if text else response.reason
    return f"{first} (HTTP {response.status_code})"
