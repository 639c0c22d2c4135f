"""Plain-httpx transport to a DMR server: JSON posts, SSE streams, and error translation.

LiteLLM's own HTTP handlers need a first-class provider enum entry, which an external package
cannot add, so the plugin talks HTTP itself. Errors are raised so that LiteLLM maps them to its
usual classes with the server's status kept (404 -> NotFoundError, 400 -> BadRequestError, ...).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import litellm
from httpx_sse import EventSource, SSEError
from litellm.llms.custom_llm import CustomLLMError

from .naming import ENV_API_BASE
from .payload import Request

#: LiteLLM's default when the caller gives no timeout.
DEFAULT_TIMEOUT = 600.0

_sync_client: httpx.Client | None = None
_sync_client_lock = threading.Lock()


def _client() -> httpx.Client:
    """One pooled sync client per process (httpx.Client is thread-safe)."""
    global _sync_client
    with _sync_client_lock:
        if _sync_client is None or _sync_client.is_closed:
            _sync_client = httpx.Client(timeout=DEFAULT_TIMEOUT)
        return _sync_client


def as_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(float(timeout) if timeout else DEFAULT_TIMEOUT)


def _error_message(body: str) -> str:
    """The `error.message` of an OpenAI-shaped error body, else the raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip() or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if data.get("message"):
            return str(data["message"])
    return body.strip()


def status_error(status: int, body: str, url: str,
                 headers: httpx.Headers | None = None) -> CustomLLMError:
    """An HTTP error LiteLLM will map by status (its exception_type reads `status_code`):
    5xx become InternalServerError/BadGatewayError/ServiceUnavailableError, which its Router
    retries on another deployment and counts for cooldowns; 400, 413 and 422 are the
    caller's fault and are neither. The response headers ride along, so an overloaded
    server's `Retry-After` sets how long the Router leaves it alone."""
    error = CustomLLMError(
        status_code=status,
        message=f"Docker Model Runner: {_error_message(body)} (HTTP {status} from POST {url})",
    )
    if headers is not None:
        error.headers = headers  # read by litellm's exception mapping (_get_response_headers)
    return error


def transport_error(exc: httpx.HTTPError, url: str, model: str, provider: str,
                    answering: bool = False) -> Exception:
    """Translate a network failure into the LiteLLM class its Router treats as a node failure.

    The Router retries on another deployment and counts toward `allowed_fails`/cooldown only
    errors whose status says so, and it never cools a deployment down for an exception whose
    text contains "APIConnectionError" (`router_utils/cooldown_handlers._is_cooldown_required`):
    a dead server would keep its share of the traffic. So a server that cannot be reached, or
    that drops the connection, is a 503 `ServiceUnavailableError` and a timeout is a 408
    `Timeout`: both are retried elsewhere and cool the deployment down.
    """
    if isinstance(exc, httpx.TimeoutException):
        return litellm.Timeout(
            message=f"Docker Model Runner at {url} timed out: {exc!r}",
            model=model,
            llm_provider=provider,
        )
    if isinstance(exc, httpx.TransportError):
        if answering:  # `answering`: the answer had started when the connection broke
            message = f"The connection to Docker Model Runner at {url} broke mid-answer: {exc!r}"
        else:
            message = (f"Cannot reach Docker Model Runner at {url}: {exc!r}. Is the server "
                       f"running? Set api_base or ${ENV_API_BASE} to its address.")
        return litellm.ServiceUnavailableError(
            message=message,
            llm_provider=provider,
            model=model,
        )
    return litellm.APIError(  # e.g. a response body that cannot be decoded
        status_code=502,
        message=f"Docker Model Runner at {url} sent a broken response: {exc!r}",
        llm_provider=provider,
        model=model,
    )


def _decode_json(resp: httpx.Response, url: str) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError as exc:
        raise CustomLLMError(500, f"Docker Model Runner sent invalid JSON from {url}: {exc}") from exc
    if not isinstance(data, dict):
        raise CustomLLMError(500, f"Docker Model Runner sent a non-object JSON body from {url}")
    return data


def post_json(req: Request, timeout: float | httpx.Timeout | None) -> dict[str, Any]:
    try:
        resp = _client().post(req.url, json=req.body, headers=req.headers,
                              timeout=as_timeout(timeout))
    except httpx.HTTPError as exc:
        raise transport_error(exc, req.url, req.model, req.provider) from exc
    if resp.status_code >= 400:
        raise status_error(resp.status_code, resp.text, req.url, resp.headers)
    return _decode_json(resp, req.url)


async def apost_json(req: Request, timeout: float | httpx.Timeout | None) -> dict[str, Any]:
    # A client per call: async clients are bound to the event loop that created them.
    try:
        async with httpx.AsyncClient(timeout=as_timeout(timeout)) as client:
            resp = await client.post(req.url, json=req.body, headers=req.headers)
    except httpx.HTTPError as exc:
        raise transport_error(exc, req.url, req.model, req.provider) from exc
    if resp.status_code >= 400:
        raise status_error(resp.status_code, resp.text, req.url, resp.headers)
    return _decode_json(resp, req.url)


def _sse_payload(data: str) -> dict[str, Any] | None:
    """One SSE event's data to its JSON event; None for empty data and `[DONE]`."""
    data = data.strip()
    if not data or data == "[DONE]":
        return None
    event = json.loads(data)
    if isinstance(event, dict) and "error" in event and "choices" not in event:
        err = event["error"]
        status = err.get("code") if isinstance(err, dict) else None
        raise CustomLLMError(
            status if isinstance(status, int) and status >= 400 else 500,
            f"Docker Model Runner stream error: {_error_message(data)}",
        )
    return event if isinstance(event, dict) else None


def stream_events(req: Request, timeout: float | httpx.Timeout | None) -> Iterator[dict[str, Any]]:
    """POST now and return an iterator over the SSE `data:` events, until `[DONE]`.

    The request is sent before this returns, so a refused connection or an HTTP error is
    raised from the `completion(stream=True)` call itself, as for non-streaming calls.
    """
    client = _client()
    try:
        resp = client.send(
            client.build_request("POST", req.url, json=req.body, headers=req.headers,
                                 timeout=as_timeout(timeout)),
            stream=True)
    except httpx.HTTPError as exc:
        raise transport_error(exc, req.url, req.model, req.provider) from exc
    if resp.status_code >= 400:
        try:
            body = resp.read().decode(errors="replace")
        finally:
            resp.close()
        raise status_error(resp.status_code, body, req.url, resp.headers)
    return _iter_events(resp, req)


def _iter_events(resp: httpx.Response, req: Request) -> Iterator[dict[str, Any]]:
    try:
        # httpx-sse parses the stream (comments, multi-line data, CR/LF); we read the data.
        for sse in EventSource(resp).iter_sse():
            if sse.data.strip() == "[DONE]":
                return
            event = _sse_payload(sse.data)
            if event is not None:
                yield event
    except SSEError as exc:
        raise CustomLLMError(502, f"Docker Model Runner sent no event stream: {exc}") from exc
    except httpx.HTTPError as exc:
        raise transport_error(exc, req.url, req.model, req.provider, answering=True) from exc
    finally:
        resp.close()


def astream_events(req: Request, timeout: float | httpx.Timeout | None
                   ) -> AsyncIterator[dict[str, Any]]:
    """Async twin of `stream_events` that is just as eager: the request is sent, and a
    refused connection or an HTTP error raised, before this returns.

    LiteLLM wraps a custom provider's async stream in its stream wrapper without awaiting
    anything, and its Router only retries another deployment, and counts the failure for
    cooldowns, when `acompletion` itself raises: an error met while the stream is first read
    becomes a MidStreamFallbackError that only a configured fallback group handles. LiteLLM
    calls `astreaming` in an executor thread, so connecting here blocks no event loop; the
    events are then read off the event loop's thread one at a time.
    """
    return _off_thread(stream_events(req, timeout))


async def _off_thread(events: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    end = object()
    try:
        while True:
            event = await asyncio.to_thread(next, events, end)
            if event is end:
                return
            yield event
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
