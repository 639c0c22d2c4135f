"""The OpenAI dialect: /engines[/{engine}]/v1/... and the /v1/... alias.

Chat completions, legacy completions and embeddings, streamed as OpenAI streams them (SSE,
one id for every chunk, role in the first delta, optional usage chunk, `data: [DONE]`).
Errors use OpenAI's shape: {"error": {"message", "type", "param", "code"}}. The translation
lives in openai_codec.py (chat, embeddings, errors) and openai_legacy_codec.py (/completions);
here are the routes.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..core import pipeline
from ..core.errors import DMRError, InvalidRequest
from ..state import current
from . import openai_codec as codec
from . import openai_legacy_codec as legacy
from .common import check_engine_segment, claim_unrouted, install_error_handlers, json_error
from .openai_codec import error_body
from .recorder import record
from .sse import streaming_response
from .validation import json_body

bp = Blueprint("openai", __name__)


def error_response(exc: DMRError) -> Response:
    return json_error(error_body(exc), exc.status, exc)


bp.before_request(check_engine_segment)
install_error_handlers(bp, error_response, "OpenAI")


# ------------------------------------------------------------------------------------ routes


@bp.post("/chat/completions")
@record("openai")
def chat_completions(engine: str | None = None):
    body = json_body()
    req = codec.parse_chat(body, engine)
    run = pipeline.start_chat(current().runtime, req)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return streaming_response(codec.chat_stream(run, body["model"], include_usage),
                                  "text/event-stream", on_close=run.close)
    return jsonify(codec.chat_response(run, body["model"]))


@bp.post("/completions")
@record("openai")
def completions(engine: str | None = None):
    body = json_body()
    reqs = legacy.parse_completion(body, engine)
    runtime = current().runtime
    runs: list[pipeline.Run] = []
    try:
        for req in reqs:
            runs.append(pipeline.start_completion(runtime, req))
    except BaseException:
        for run in runs:
            run.events.close()
        raise
    n = reqs[0].n
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return streaming_response(legacy.completion_stream(runs, body["model"], n, include_usage),
                                  "text/event-stream",
                                  on_close=lambda: [run.close() for run in runs])
    return jsonify(legacy.completion_json(runs, body["model"], n))


@bp.post("/embeddings")
@record("openai")
def embeddings(engine: str | None = None):
    body = json_body()
    result = pipeline.embed(current().runtime, codec.parse_embedding(body, engine))
    return jsonify(codec.embedding_json(result, body["model"],
                                        body.get("encoding_format") == "base64"))


@bp.post("/images/generations")
def image_generations(engine: str | None = None):
    """Image generation belongs to the diffusers engine, which this server does not run."""
    current().runtime.resolve_engine(engine or "diffusers")
    raise InvalidRequest(f"the {engine} engine does not generate images; use the diffusers "
                         "engine (/engines/diffusers/v1/images/generations)")


def register(app) -> None:
    """Mount the dialect at every prefix DMR serves it under."""
    claim_unrouted(app, r"^/(engines/([^/]+/)?)?v1(/|$)", error_response)
    app.register_blueprint(bp, url_prefix="/engines/v1", name="openai_engines")
    app.register_blueprint(bp, url_prefix="/engines/<engine>/v1", name="openai_engine")
    app.register_blueprint(bp, url_prefix="/v1", name="openai_v1")
