"""The request recorder: each dialect's recent requests and answers, per model, as Docker
Model Runner keeps them for `GET /engines/requests` (Docker Desktop's Requests tab).

It sits at the API edge and records what went over the wire: the request body and the answer
(a stream rebuilt into the dialect's whole answer, rebuild.py), the status, the client's
user agent. A route is recorded when its view carries `@record("<dialect>")`:

    @bp.post("/responses")
    @record("responses")
    def create_response(): ...

Beyond DMR: a ring of `recorder_size` records per model (default 10, as DMR) that survives
unloads, at most `MAX_MODELS` rings; no header is kept (so never `Authorization` or
`x-api-key`), and configured keys and the key the client sent are scrubbed from everything
that is; base64 media is cut to 100 characters (as DMR) and each text to `MAX_TEXT`. Only
requests naming a model in the store are recorded (a ring per arbitrary name would grow
without bound), and requests refused by the Host, CORS or key checks never reach it.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, g, request

from .rebuild import REBUILDERS, StreamReader

#: Base64 media longer than this is truncated (DMR's maxMediaDataLength).
MEDIA_CHARS = 100
#: Longest request or answer text kept in a record.
MAX_TEXT = 256 * 1024
#: Rings kept at most (the least recently recorded model's is dropped first).
MAX_MODELS = 64
#: Events a slow SSE subscriber may fall behind before it misses some.
SUBSCRIBER_BUFFER = 100
#: DMR's X-Request-Origin values, for the dialects it translates itself.
ORIGINS = {"anthropic": "anthropic/messages", "ollama": "ollama/completion"}

_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
_VIEW_ATTRIBUTE = "dmr_record"


def record(dialect: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a view as recorded; `dialect` picks how its streams are rebuilt (rebuild.py:
    openai, anthropic, ollama, responses; any other name keeps non-streamed answers only)."""

    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        setattr(view, _VIEW_ATTRIBUTE, dialect)
        return view

    return mark


# ------------------------------------------------------------------------------ scrubbing


def _truncate_media(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _truncate_media(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_truncate_media(v) for v in value]
    if isinstance(value, str) and len(value) > MEDIA_CHARS:
        head, sep, payload = value.partition(",")
        if value.startswith("data:") and sep and ";base64" in head:
            if len(payload) > MEDIA_CHARS:
                return (f"{head},{payload[:MEDIA_CHARS]}...[truncated "
                        f"{len(payload) - MEDIA_CHARS} chars]")
        elif _BASE64.match(value):
            return f"{value[:MEDIA_CHARS]}...[truncated {len(value) - MEDIA_CHARS} chars]"
    return value


def _cap(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return f"{text[:MAX_TEXT]}...[truncated {len(text) - MAX_TEXT} chars]"


def body_text(raw: bytes | str | Any, secrets: Iterable[str]) -> str:
    """A body as a record keeps it: JSON with base64 media truncated (else the text as it
    came), secrets replaced by `[redacted]`, at most MAX_TEXT characters."""
    data = raw if not isinstance(raw, bytes | str) else None
    if data is None:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if data is not None:
        text = json.dumps(_truncate_media(data), ensure_ascii=False, separators=(",", ":"))
    return _cap(scrub(text, secrets))


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def _presented_key() -> list[str]:
    """The key this client sent (even one the server does not check): long enough to be a
    real secret (an SDK's placeholder such as `x` is not scrubbed from every word)."""
    auth = request.headers.get("Authorization", "")
    token = auth.partition(" ")[2].strip() if " " in auth else auth.strip()
    return [k for k in (token, request.headers.get("x-api-key", "").strip()) if len(k) >= 8]


def _usage(answer: Any) -> dict[str, int] | None:
    """Prompt and completion tokens from any dialect's answer."""
    if not isinstance(answer, dict):
        return None
    if "prompt_eval_count" in answer or "eval_count" in answer:  # Ollama
        return {"prompt_tokens": answer.get("prompt_eval_count") or 0,
                "completion_tokens": answer.get("eval_count") or 0}
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    if prompt is None and completion is None:
        return None
    return {"prompt_tokens": prompt or 0, "completion_tokens": completion or 0}


def _error_json(text: str) -> str:
    """DMR's rule: the error is always JSON; text that is not becomes {"error": text}."""
    text = text.strip()
    try:
        json.loads(text)
        return text
    except ValueError:
        return json.dumps({"error": text.strip() or "unknown error"}, ensure_ascii=False)


# ------------------------------------------------------------------------------ the store


@dataclass
class Pending:
    """A request on its way to becoming a record: what the request context held."""

    dialect: str
    model_id: str
    record: dict[str, Any]
    secrets: list[str]
    started: float = field(default_factory=time.monotonic)


class Recorder:
    """Rings of records per model ID and the SSE subscribers that follow them."""

    def __init__(self, size: int = 10, secrets: Iterable[str] = ()):
        self.size = size
        self.secrets = [s for s in secrets if s]
        self._lock = threading.Lock()
        self._rings: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._subscribers: set[queue.Queue] = set()

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def add(self, model_id: str, rec: dict[str, Any]) -> None:
        with self._lock:
            ring = self._rings.get(model_id)
            if ring is None:
                ring = self._rings[model_id] = deque(maxlen=self.size)
                while len(self._rings) > MAX_MODELS:
                    self._rings.popitem(last=False)
            self._rings.move_to_end(model_id)
            ring.append(rec)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.put_nowait((model_id, rec))
            except queue.Full:  # a stalled follower misses events, as in DMR
                pass

    def rings(self, model_id: str | None = None) -> list[tuple[str, list[dict[str, Any]]]]:
        with self._lock:
            return [(mid, list(ring)) for mid, ring in self._rings.items()
                    if model_id is None or mid == model_id]

    def subscribe(self) -> queue.Queue:
        sub: queue.Queue = queue.Queue(maxsize=SUBSCRIBER_BUFFER)
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: queue.Queue) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    # ------------------------------------------------------------------ one request

    def finish(self, pending: Pending, status: int, answer_text: str | None,
               rebuilt: Any = None, stream_error: Any = None, cut_off: bool = False) -> None:
        rec = pending.record
        rec["status_code"] = status or 408  # nothing was sent: DMR records a 408
        rec["latency_ms"] = round((time.monotonic() - pending.started) * 1000, 1)
        answer: Any = rebuilt
        if answer is None and answer_text:
            try:
                answer = json.loads(answer_text)
            except ValueError:
                answer = None
        if status >= 400:
            rec["error"] = _cap(scrub(_error_json(answer_text or ""), pending.secrets))
        elif stream_error is not None:
            rec["error"] = body_text(stream_error, pending.secrets)
        elif cut_off:
            rec["error"] = json.dumps({"error": "the client closed the connection before the "
                                                "answer ended"})
        if status < 400:
            shown = answer if answer is not None else (answer_text or "")
            rec["response"] = body_text(shown, pending.secrets)
        rec["usage"] = _usage(answer)
        self.add(pending.model_id, rec)


# ------------------------------------------------------------------------------ the hook


def _tee(chunks: Iterable[Any], reader: StreamReader, state: dict[str, bool]) -> Iterator[Any]:
    iterator = iter(chunks)
    try:
        for chunk in iterator:
            if not state["broken"]:
                try:
                    reader.feed(chunk)
                except Exception:  # recording must never break an answer
                    state["broken"] = True
            yield chunk
        state["complete"] = True
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def install(app: Flask, recorder: Recorder, find_model: Callable[[str], Any]) -> None:
    """Record the marked views' requests. `find_model(name)` returns the stored model (with
    `id` and `name`) or None."""

    @app.before_request
    def _start() -> None:
        view = app.view_functions.get(request.endpoint or "")
        dialect = getattr(view, _VIEW_ATTRIBUTE, None)
        if dialect and recorder.enabled:
            g.dmr_record = (dialect, time.monotonic(), time.time())

    @app.after_request
    def _finish(response: Response) -> Response:
        started = g.pop("dmr_record", None)
        if started is None:
            return response
        try:
            return _record(response, *started)
        except Exception:  # never let the recorder fail a request
            app.logger.exception("request recorder failed")
            return response

    def _record(response: Response, dialect: str, mono: float, wall: float) -> Response:
        try:
            raw = request.get_data(cache=True)
        except Exception:  # too large, cut off: what the view said about it is recorded
            raw = b""
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            body = None
        name = (body.get("model") or body.get("name")) if isinstance(body, dict) else None
        stored = find_model(name) if isinstance(name, str) and name.strip() else None
        if stored is None:
            return response
        secrets = [*recorder.secrets, *_presented_key()]
        pending = Pending(dialect, stored.id, {
            "id": f"{stored.id}_{time.time_ns()}",
            "model": name,
            "method": request.method,
            "url": scrub(request.path, secrets),
            "request": body_text(body if body is not None else raw, secrets),
            "response": "",
            "error": "",
            "timestamp": int(wall),
            "status_code": 0,
            "user_agent": scrub(request.headers.get("User-Agent", ""), secrets),
            "origin": scrub(request.headers.get("X-Request-Origin", ""), secrets)
            or ORIGINS.get(dialect, ""),
            # ours, beyond DMR's fields:
            "dialect": dialect,
            "stream": response.is_streamed,
        }, secrets, started=mono)
        if not response.is_streamed:
            recorder.finish(pending, response.status_code, response.get_data(as_text=True))
            return response
        rebuilder = REBUILDERS.get(dialect)
        builder = rebuilder() if rebuilder is not None else None
        state = {"complete": False, "broken": False}
        if builder is not None:
            reader = StreamReader(builder, sse=response.mimetype == "text/event-stream")
            response.response = _tee(response.response, reader, state)
        status = response.status_code

        def done() -> None:  # after the last byte, or once the client has gone
            if builder is None:
                recorder.finish(pending, status, None)
                return
            reader.close()
            recorder.finish(pending, status, None, rebuilt=builder.answer(),
                            stream_error=builder.error, cut_off=not state["complete"])

        response.call_on_close(done)
        return response
