"""Small pieces every dialect shares: the one error policy and the engine segment check.

Every blueprint answers errors the same way, in its own dialect's shape: `install_error_handlers`
takes the dialect's `shape` (a core error to a response) and registers it for the core errors,
for werkzeug's HTTP errors (bad body, body too large) and for anything unexpected (logged, then
answered as a 500, never an HTML page). Streams that fail after their 200 report in-band with
`in_band`, so a stream never ends without a last word.

An error raised before routing found a route (the security checks on a path no route serves)
has no blueprint to shape it: the app's fallback answers in the shape of the dialect that
claimed the path (`claim_unrouted`), else in DMR's plain text, as do blueprints without a
policy of their own (/, /health, /metrics, /ui).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ..core.errors import DMRError, ErrorKind
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
    return _challenge(response, exc)


def plain_error(exc: DMRError) -> Response:
    """DMR's native routes answer errors in plain text."""
    return _challenge(Response(exc.message + "\n", status=exc.status, mimetype="text/plain"),
                      exc)


def _challenge(response: Response, exc: DMRError) -> Response:
    """A missing or wrong API key asks for one (`challenge` on the error, see security.py)."""
    challenge = getattr(exc, "challenge", None)
    if challenge:
        response.headers["WWW-Authenticate"] = challenge
    return response


def http_error(exc: HTTPException) -> DMRError:
    """A werkzeug HTTP error (a malformed or too large body) as a core error, its status kept."""
    error = DMRError(exc.description or exc.name)
    error.status = exc.code or 500
    error.kind = {413: ErrorKind.REQUEST_TOO_LARGE, 404: ErrorKind.NOT_FOUND}.get(
        exc.code or 0, ErrorKind.INVALID_REQUEST)
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


_CLAIMS = "dmr_unrouted_claims"


def claim_unrouted(app: Flask, pattern: str, shape: Shape, *, priority: int = 0) -> None:
    """Errors on paths that match `pattern` (searched) but no route answer in `shape`; the
    lowest `priority` wins where claims overlap."""
    claims = app.extensions.setdefault(_CLAIMS, [])
    claims.append((priority, re.compile(pattern), shape))
    claims.sort(key=lambda claim: claim[0])


def install_fallback(app: Flask) -> None:
    """The app's answer to core errors no blueprint shaped (see the module docstring)."""

    def fallback(exc: DMRError) -> Response:
        if request.url_rule is None:
            for _, pattern, shape in app.extensions.get(_CLAIMS, ()):
                if pattern.search(request.path):
                    return shape(exc)
        return plain_error(exc)

    app.register_error_handler(DMRError, fallback)


def check_engine_segment() -> None:
    """before_request hook: an unknown or absent engine in the URL is answered before the body
    is read, as DMR does."""
    engine = (request.view_args or {}).get("engine")
    if engine is not None:
        current().runtime.resolve_engine(engine)
