"""Helpers for streamed responses shared by the dialects."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sse_data(obj: Any) -> str:
    return f"data: {dumps(obj)}\n\n"


def sse_event(event: str, obj: Any) -> str:
    return f"event: {event}\ndata: {dumps(obj)}\n\n"


def streaming_response(chunks: Iterable[str], mimetype: str) -> Response:
    """A response that is written as it is produced; closing it (client gone) closes `chunks`."""
    return Response(_encoded(chunks), mimetype=mimetype,
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _encoded(chunks: Iterable[str]) -> Iterator[bytes]:
    iterator = iter(chunks)
    try:
        for chunk in iterator:
            yield chunk.encode()
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
