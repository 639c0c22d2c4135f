"""Small pieces every dialect shares: error responses and the engine segment check."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from ..core.errors import DMRError
from ..state import current


def json_error(body: Any, status: int, exc: DMRError) -> Response:
    """A dialect's error body with its status; "overloaded" also says when to retry."""
    response = jsonify(body)
    response.status_code = status
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int) and retry_after > 0:
        response.headers["Retry-After"] = str(retry_after)
    return response


def check_engine_segment() -> None:
    """before_request hook: an unknown or absent engine in the URL is answered before the body
    is read, as DMR does."""
    engine = (request.view_args or {}).get("engine")
    if engine is not None:
        current().runtime.resolve_engine(engine)
