"""Small pieces every dialect shares: the one error policy and the engine segment check.

Every blueprint answers errors the same way, in its own dialect's shape: `install_error_handlers`
takes the dialect's `shape` (a core error to a response) and registers it for the core errors,
for werkzeug's HTTP errors (bad body, body too large) and for anything unexpected (logged, then
answered as a 500, never an HTML page). Streams that fail after their 200 report in-band with
`in_band`, so a stream never ends without a last word.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ..core.errors import DMRError
from ..state import current

log = logging.getLogger(__name__)

#: A dialect's error answer: a core error in, the dialect's status and body out.
Shape = Callable[[DMRError], Response]


def json_error(body: Any, status: int, exc: DMRError) -> Response:
    """A dialect's error body with its status; "overloaded" also says when to retry."""
    response = jsonify(body)
    response.status_code = status
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int) and retry_after > 0:
        response.headers["Retry-After"] = str(retry_after)
    return response


def plain_error(exc: DMRError) -> Response:
    """DMR's native routes answer errors in plain text."""
    return Response(exc.message + "\n", status=exc.status, mimetype="text/plain")


def http_error(exc: HTTPException) -> DMRError:
    """A werkzeug HTTP error (a malformed or too large body) as a core error, its status kept."""
    error = DMRError(exc.description or exc.name)
    error.status = exc.code or 500
    error.kind = {413: "request_too_large", 404: "not_found"}.get(exc.code or 0,
                                                                  "invalid_request")
    return error


def internal_error(exc: BaseException) -> DMRError:
    """What a client is told about a fault of ours (the traceback goes to the log)."""
    return DMRError(f"internal server error: {exc}")


def in_band(exc: Exception, dialect: str) -> DMRError:
    """The error a stream reports after its 200: ours as it is, anything else logged first."""
    if isinstance(exc, DMRError):
        return exc
    log.exception("%s stream failed", dialect)
    return internal_error(exc)


def install_error_handlers(bp: Blueprint, shape: Shape, dialect: str) -> None:
    """Answer every error raised while `bp` handles a request in `shape`.

    Call before the blueprint is registered (Flask copies its handlers then). 404 and 405
    for paths no route serves are the app's (plain text, as DMR answers them)."""

    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error in the %s API", dialect)
        return shape(internal_error(exc))

    bp.register_error_handler(DMRError, shape)
    bp.register_error_handler(HTTPException, lambda exc: shape(http_error(exc)))
    bp.register_error_handler(Exception, unexpected)


def check_engine_segment() -> None:
    """before_request hook: an unknown or absent engine in the URL is answered before the body
    is read, as DMR does."""
    engine = (request.view_args or {}).get("engine")
    if engine is not None:
        current().runtime.resolve_engine(engine)
