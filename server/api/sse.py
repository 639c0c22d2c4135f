"""Helpers for streamed responses shared by the dialects."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Response


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sse_data(obj: Any) -> str:
    return f"data: {dumps(obj)}\n\n"


def sse_event(event: str, obj: Any) -> str:
    return f"event: {event}\ndata: {dumps(obj)}\n\n"


def streaming_response(chunks: Iterable[str], mimetype: str,
                       on_close: Callable[[], None] | None = None) -> Response:
    """A response that is written as it is produced.

    `on_close` runs when the server closes the response: at the end, or when the client has
    gone, even before the first chunk (when no generator `finally` would run). Pass the runs'
    close() so that their model slots are always freed.
    """
    response = Response(_encoded(chunks), mimetype=mimetype,
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    if on_close is not None:
        response.call_on_close(on_close)
    return response


def _encoded(chunks: Iterable[str]) -> Iterator[bytes]:
    iterator = iter(chunks)
    try:
        for chunk in iterator:
            yield chunk.encode()
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
