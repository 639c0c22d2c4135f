"""The Anthropic dialect: Claude's Messages API, so the official SDK works against us unchanged.

Routes: POST /v1/messages, /anthropic/v1/messages and /engines[/{engine}]/v1/messages, each
with /count_tokens. Requests are validated (schemas/anthropic_*.json), translated to a core
ChatRequest, and the core's events are encoded back the way Claude encodes them: content blocks
in order (thinking, text, tool_use), one open at a time, each streamed as start, deltas, stop.
Errors use Claude's shape {"type": "error", "error": {"type", "message"}, "request_id"} and
statuses. Auth and version headers (x-api-key, anthropic-version, anthropic-beta) are ignored.
The translation lives in anthropic_codec.py (requests, errors) and anthropic_encoder.py (the
block encoder); here are the routes, the request id and the thinking signer.
"""

from __future__ import annotations

import secrets

from flask import Blueprint, Response, current_app, g, jsonify

from ..core.errors import DMRError
from ..core.signing import ThinkingSigner
from ..state import current
from . import anthropic_codec as codec
from . import anthropic_encoder as encoder
from . import remote
from .common import check_engine_segment, claim_unrouted, install_error_handlers, json_error
from .recorder import record
from .sse import streaming_response
from .validation import json_body

bp = Blueprint("anthropic", __name__)


def _request_id() -> str:
    if "anthropic_request_id" not in g:
        g.anthropic_request_id = "req_" + secrets.token_hex(12)
    return g.anthropic_request_id


def error_response(exc: DMRError) -> Response:
    return json_error(codec.error_body(exc, _request_id()), codec.error_status(exc), exc)


bp.before_request(check_engine_segment)


@bp.after_request
def _add_request_id(response: Response) -> Response:
    response.headers["request-id"] = _request_id()
    return response


install_error_handlers(bp, error_response, "Anthropic")


def signer() -> ThinkingSigner:
    """The signer for this server's model store (its key lives there; see core/signing.py)."""
    extensions = current_app.extensions
    if "anthropic_signer" not in extensions:
        extensions["anthropic_signer"] = ThinkingSigner.for_directory(current().store.root)
    return extensions["anthropic_signer"]


# ------------------------------------------------------------------------------------ routes


@bp.post("/messages")
@record("anthropic")
def messages(engine: str | None = None):
    body = json_body()
    signer_ = signer()
    req, options = codec.parse_messages(body, engine, signer_)
    run = remote.start_chat(current().runtime, req, bool(body.get("stream")))
    blocks = encoder.Blocks(options, signer_)
    if body.get("stream"):
        return streaming_response(encoder.message_stream(run, body["model"], blocks, _request_id()),
                                  "text/event-stream", on_close=run.close)
    return jsonify(encoder.message_json(run, body["model"], blocks))


@bp.post("/messages/count_tokens")
@record("anthropic")
def count_tokens(engine: str | None = None):
    req = codec.parse_count_tokens(json_body(), engine, signer())
    return jsonify({"input_tokens": remote.count_chat_tokens(current().runtime, req)})


def register(app) -> None:
    """Mount the dialect where DMR serves it, and where the SDK's base URL leads."""
    # Before OpenAI's claim: /engines/v1/messages/... is ours.
    claim_unrouted(app, r"^/anthropic(/|$)|(^|/)v1/messages(/|$)", error_response,
                   priority=-1)
    for prefix, name in (("/v1", "anthropic_v1"), ("/anthropic/v1", "anthropic"),
                         ("/engines/v1", "anthropic_engines"),
                         ("/engines/<engine>/v1", "anthropic_engine")):
        app.register_blueprint(bp, url_prefix=prefix, name=name)
