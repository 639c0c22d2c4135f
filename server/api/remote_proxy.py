"""The OpenAI routes of a remote engine, passed through to its upstreams.

`/engines/<remote>/v1/<anything>` (chat, completions, embeddings, responses, ... whatever the
upstream has) is forwarded with the client's body, query and content headers; the client's
credentials are not (each upstream gets its own `api_key_env`). Streams are relayed as the
upstream sends them, one SSE event at a time (an event is held only until its blank line has
arrived, so a failure never leaves half an event behind). Upstream errors keep their status
in OpenAI's shape; a failure after the stream started ends it with an in-band error event, as
OpenAI's own streams do. Model listings are built from the health checks' model lists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, jsonify, request

from ..core.errors import DMRError, InvalidRequest, ModelNotFound
from ..engines.remote.engine import Forwarded, RemoteEngine, UpstreamBroken
from ..engines.remote.upstream import model_key
from . import openai_codec
from .sse import dumps

#: Request headers passed on (besides the body's content type); never Authorization/cookies.
REQUEST_HEADERS = ("content-type", "accept", "x-request-id", "openai-beta", "idempotency-key")
#: Response headers passed back.
RESPONSE_HEADERS = ("content-type", "x-request-id", "retry-after", "openai-processing-ms",
                    "openai-version")


# ------------------------------------------------------------------------------ SSE framing


def sse_events(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Complete SSE events (each ending in a blank line) from arbitrary chunks, as soon as
    each is complete. A chunk holding several whole events is passed on as it is."""
    tail = b""
    for chunk in chunks:
        data = tail + chunk if tail else chunk
        data = data.replace(b"\r\n", b"\n") if b"\r" in data else data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            tail = data
            continue
        tail = data[cut + 2:]
        yield data[:cut + 2]
    if tail.strip():
        yield tail if tail.endswith(b"\n\n") else tail + b"\n\n"


def event_payloads(chunks: Iterator[bytes]) -> Iterator[str]:
    """The `data:` payloads of an SSE stream, `[DONE]` included."""
    for block in sse_events(chunks):
        for event in block.split(b"\n\n"):
            lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
            if lines:
                yield b"\n".join(lines).decode("utf-8", errors="replace")


# ------------------------------------------------------------------------------ errors


def upstream_error_body(status: int, raw: bytes, upstream: str) -> dict[str, Any]:
    """An upstream's error in OpenAI's shape (vLLM's older `{"object": "error", "message"}`
    and plain-text gateway pages included)."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return data
    if isinstance(data, dict) and data.get("message"):
        message, kind = str(data["message"]), str(data.get("type") or "")
    elif isinstance(data, dict) and isinstance(data.get("error"), str):
        message, kind = data["error"], ""
    else:
        text = raw.decode("utf-8", errors="replace").strip()[:500]
        message, kind = f"upstream {upstream} answered HTTP {status}: {text or '(empty)'}", ""
    return {"error": {"message": message,
                      "type": kind or ("invalid_request_error" if status < 500 else "server_error"),
                      "param": None, "code": status}}


def in_band_error(exc: DMRError) -> bytes:
    return f"data: {dumps(openai_codec.error_body(exc))}\n\n".encode()


# ------------------------------------------------------------------------------ passthrough


def _forward_headers() -> dict[str, str]:
    return {name: request.headers[name] for name in REQUEST_HEADERS if name in request.headers}


def _body_and_model() -> tuple[bytes, dict[str, Any] | None]:
    raw = request.get_data(cache=True)
    if not raw or not request.is_json:
        return raw, None
    try:
        body = json.loads(raw)
    except ValueError:
        return raw, None  # the upstream answers its own 400
    return raw, body if isinstance(body, dict) else None


def passthrough(engine: RemoteEngine, path: str) -> Response:
    """Forward the current request to `engine` as `<upstream base>/<path>`."""
    raw, body = _body_and_model()
    model = body.get("model") if body is not None else None
    model = model if isinstance(model, str) and model else None

    def respell(name: str) -> bytes:
        return json.dumps({**body, "model": name}, ensure_ascii=False).encode()

    forwarded = engine.forward(request.method, path, body=raw or None, headers=_forward_headers(),
                               query=request.query_string.decode("latin-1"), model=model,
                               respell=respell if body is not None else None)
    return relay(forwarded)


def relay(forwarded: Forwarded) -> Response:
    """Our response for an upstream's answer: status, selected headers, body or stream."""
    headers = {k: v for k, v in forwarded.headers.items() if k.lower() in RESPONSE_HEADERS}
    if forwarded.status >= 400:
        try:
            raw = b"".join(forwarded.chunks())
        except UpstreamBroken as exc:
            raw = dumps(openai_codec.error_body(exc)).encode()
        body = upstream_error_body(forwarded.status, raw, forwarded.upstream.url)
        response = jsonify(body)
        response.status_code = forwarded.status
        if "retry-after" in forwarded.headers:
            response.headers["Retry-After"] = forwarded.headers["retry-after"]
        return response
    if not forwarded.streaming:
        forwarded.close()
        return Response(forwarded.body(), status=forwarded.status, headers=headers)
    headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response = Response(_relay_stream(forwarded), status=forwarded.status, headers=headers)
    response.call_on_close(forwarded.close)
    return response


def _relay_stream(forwarded: Forwarded) -> Iterator[bytes]:
    try:
        yield from sse_events(forwarded.chunks())
    except UpstreamBroken as exc:
        yield in_band_error(exc)
    finally:
        forwarded.close()


# ------------------------------------------------------------------------------ models


def model_json(engine: RemoteEngine, model, urls: list[str]) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": model.created or 0,
            "owned_by": model.owned_by or engine.name,
            "dmr": {"backend": engine.name, "name": model_key(model.id), "upstreams": urls}}


def openai_models(engines: list[RemoteEngine]) -> list[dict[str, Any]]:
    return [model_json(e, m, urls) for e in engines for m, urls in e.models()]


def openai_model(engine: RemoteEngine, name: str) -> Response:
    key = model_key(name)
    for model, urls in engine.models():
        if model.id == name or model_key(model.id) == key:
            return jsonify(model_json(engine, model, urls))
    raise ModelNotFound(name)


def native_models(engines: list[RemoteEngine]) -> list[dict[str, Any]]:
    """Remote models in DMR's /models shape; `backend` tells them from stored ones."""
    out = []
    for engine in engines:
        for model, urls in engine.models():
            tags = list(dict.fromkeys([model.id, model_key(model.id)]))
            out.append({"id": model.id, "tags": tags, "created": model.created or int(time.time()),
                        "config": {"format": "remote"}, "backend": engine.name,
                        "upstreams": urls})
    return out


def require_json_object() -> dict[str, Any]:
    _, body = _body_and_model()
    if body is None:
        raise InvalidRequest("request body must be a JSON object")
    return body
