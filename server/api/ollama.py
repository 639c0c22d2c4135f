"""The Ollama dialect: /api/chat, generate, embed, embeddings, tags, show, ps, pull, copy,
delete, version (and create, push, blobs: ollama_create.py).

Streams are NDJSON (one object per line, on by default); errors are {"error": "..."} with
Ollama's statuses, and an error after the stream started is one more {"error": ...} line.
Translation lives in ollama_codec.py, model descriptions in ollama_models.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, jsonify

from .. import __version__
from ..core import management, pipeline
from ..core.errors import DMRError, EngineFailure
from ..core.types import ChatRequest, EmbeddingRequest
from ..state import current
from ..store.progress import Event as PullEvent
from ..store.progress import LayerProgress
from ..store.store import StoredModel
from . import ollama_models as models
from . import remote
from .common import claim_unrouted, in_band, install_error_handlers, json_error
from .ollama_codec import (
    Encoder,
    chat_request,
    error_message,
    generate_request,
    keep_alive,
    layer_status,
    ns,
)
from .recorder import record
from .sse import dumps, streaming_response
from .validation import json_body, validate

bp = Blueprint("ollama", __name__, url_prefix="/api")

#: The Ollama API level this dialect speaks (think levels, logprobs, embed dimensions).
OLLAMA_VERSION = "0.12.11"

NDJSON = "application/x-ndjson"


# ------------------------------------------------------------------------------ errors


def error_response(exc: DMRError) -> Response:
    return json_error({"error": error_message(exc)}, exc.status, exc)


install_error_handlers(bp, error_response, "Ollama")


# ------------------------------------------------------------------------------ helpers


def ndjson(objects: Iterable[dict[str, Any]],
           on_close: Callable[[], None] | None = None) -> Iterator[str]:
    """Lines of JSON; a failure after the first line becomes one {"error"} line. Closing the
    lines (client gone) closes `objects` and calls `on_close` (which frees the model)."""
    iterator = iter(objects)
    try:
        for obj in iterator:
            yield dumps(obj) + "\n"
    except Exception as exc:  # never end a stream without a last word
        yield dumps({"error": error_message(in_band(exc, "Ollama"))}) + "\n"
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        if on_close is not None:
            on_close()


def _streams(body: dict[str, Any]) -> bool:
    return body.get("stream") is not False


def _load_or_unload(encoder: Encoder, name: str, ttl: float | None) -> Response:
    """An empty prompt loads the model (keep_alive applies); with keep_alive 0 it unloads."""
    state = current()
    if remote.is_remote_model(state.runtime, name):  # its upstreams keep it loaded
        return jsonify(encoder.status("unload" if ttl == 0 else "load", 0.0))
    if ttl == 0:  # a busy model goes as soon as its requests end
        management.unload_when_idle(state.runtime, name)
        return jsonify(encoder.status("unload"))
    with state.runtime.use(name, None, ttl) as lease:
        return jsonify(encoder.status("load", lease.load_seconds))


def _answer(encoder: Encoder, run: pipeline.Run, stream: bool) -> Response:
    if stream:
        return streaming_response(ndjson(encoder.chunks(run.events), run.events.close), NDJSON,
                                  on_close=run.close)
    try:
        return jsonify(encoder.collect(run.events))
    finally:
        run.events.close()


def _model_param(body: dict[str, Any]) -> str:
    return body.get("model") or body.get("name")


# ------------------------------------------------------------------------------ generation


@bp.post("/chat")
@record("ollama")
def chat():
    started = time.monotonic()
    body = json_body()
    validate("ollama_chat", body)
    encoder = Encoder("chat", body["model"], started)
    if not body.get("messages"):
        return _load_or_unload(encoder, body["model"], keep_alive(body.get("keep_alive")))
    run = remote.start_chat(current().runtime, chat_request(body), _streams(body))
    return _answer(encoder, run, _streams(body))


@bp.post("/generate")
@record("ollama")
def generate():
    started = time.monotonic()
    body = json_body()
    validate("ollama_generate", body)
    encoder = Encoder("generate", body["model"], started)
    if not body.get("prompt"):
        return _load_or_unload(encoder, body["model"], keep_alive(body.get("keep_alive")))
    req = generate_request(body)
    runtime = current().runtime
    if isinstance(req, ChatRequest):
        run = remote.start_chat(runtime, req, _streams(body))
    else:
        run = remote.start_completion(runtime, req, _streams(body))
    return _answer(encoder, run, _streams(body))


# ------------------------------------------------------------------------------ embeddings


@bp.post("/embed")
@record("ollama")
def embed():
    """L2-normalised vectors; `dimensions` keeps the first N (then normalises)."""
    started = time.monotonic()
    body = json_body()
    validate("ollama_embed", body)
    raw = body.get("input") or []
    inputs = [raw] if isinstance(raw, str) else list(raw)
    ttl = keep_alive(body.get("keep_alive"))
    runtime = current().runtime
    if not inputs:  # Ollama: an empty input loads the model
        load = 0.0
        if not remote.is_remote_model(runtime, body["model"]):
            with runtime.use(body["model"], None, ttl) as lease:
                load = lease.load_seconds
        return jsonify({"model": body["model"], "embeddings": [],
                        "total_duration": ns(time.monotonic() - started),
                        "load_duration": ns(load), "prompt_eval_count": 0})
    result = remote.embed(runtime, EmbeddingRequest(
        model=body["model"], inputs=inputs, truncate=body.get("truncate") is not False,
        normalize=True, dimensions=body.get("dimensions") or None, keep_alive=ttl))
    return jsonify({"model": body["model"], "embeddings": result.vectors,
                    "total_duration": ns(time.monotonic() - started),
                    "load_duration": ns(result.load_seconds),
                    "prompt_eval_count": result.prompt_tokens})


@bp.post("/embeddings")
@record("ollama")
def embeddings():
    """Legacy: one prompt, one raw (not normalised) vector."""
    body = json_body()
    validate("ollama_embeddings", body)
    ttl = keep_alive(body.get("keep_alive"))
    runtime = current().runtime
    if not body.get("prompt"):
        if not remote.is_remote_model(runtime, body["model"]):
            with runtime.use(body["model"], None, ttl):
                pass
        return jsonify({"embedding": []})
    result = remote.embed(runtime, EmbeddingRequest(
        model=body["model"], inputs=[body["prompt"]], normalize=False, keep_alive=ttl))
    return jsonify({"embedding": result.vectors[0]})


# ------------------------------------------------------------------------------ models


@bp.get("/tags")
def tags():
    state = current()
    entries = [e for m in state.store.list() for e in models.tag_entries(m)]
    return jsonify({"models": entries + remote.ollama_tags(state.runtime)})


def _context_size(stored: StoredModel) -> int:
    """The loaded model's context, else the one it will get when it loads."""
    state = current()
    loaded = [e for e in state.runtime.loaded() if e.stored.id == stored.id]
    if loaded:
        return loaded[0].model.info.n_ctx
    configs = state.runtime.configs
    configured = configs.get(stored.id) if configs is not None else None
    options = configured.load_options() if configured is not None else {}
    return models.context_size(stored, options.get("context_size"),
                               state.settings.context_size)


@bp.post("/show")
def show():
    body = json_body()
    validate("ollama_model_ref", body)
    state = current()
    stored = state.store.get(_model_param(body))
    defaults = state.runtime.model_defaults(stored).defaults
    return jsonify(models.show(stored, _context_size(stored), bool(body.get("verbose")),
                               defaults, models.license_texts(state.store, stored)))


@bp.get("/ps")
def ps():
    entries = [models.ps_entry(e) for e in current().runtime.loaded()]
    entries.sort(key=lambda e: e["expires_at"], reverse=True)
    return jsonify({"models": entries})


@bp.get("/version")
def version():
    return jsonify({"version": OLLAMA_VERSION, "dmr": __version__})


@bp.post("/copy")
def copy():
    """A new name for the same model: a tag, not a copy of the weights."""
    body = json_body()
    validate("ollama_copy", body)
    current().store.tag(body["source"], body["destination"])
    return Response(status=200)


@bp.delete("/delete")
def delete():
    """Remove one name; the model (unloaded first) goes when its last name does."""
    body = json_body()
    validate("ollama_model_ref", body)
    management.delete(current().runtime, _model_param(body))
    return Response(status=200)


@bp.post("/pull")
def pull():
    """The store's pull (OCI registry or Hugging Face) with Ollama's progress lines. A model
    already stored is still answered when the registry cannot be reached (offline use).
    Pulls share DMR's two-pull limit (core/management.py)."""
    body = json_body()
    validate("ollama_model_ref", body)
    name = _model_param(body)
    runtime = current().runtime
    pull = management.pull_or_local(runtime, name)
    note = f"using the local copy ({error_message(pull.offline)})" if pull.offline else None
    lines = _pull_lines(runtime.store, name, pull.events, note)
    if _streams(body):
        return streaming_response(ndjson(lines), NDJSON)
    return jsonify(list(lines)[-1])  # an error raises, and is answered with its status


def _pull_lines(store, name: str, events: Iterator[PullEvent],
                note: str | None) -> Iterator[dict[str, Any]]:
    """pulling manifest -> pulling <digest> (total, completed) ... -> success."""
    yield {"status": "pulling manifest"}
    if note:
        yield {"status": note}
    layers = False
    try:
        for event in events:
            if isinstance(event, LayerProgress):
                layers = True
                yield layer_status(event.layer, event.layer_size, event.current)
            elif event.kind == "success":
                stored = store.find(name)
                if not layers and stored is not None:  # nothing to download: all present
                    for digest in stored.files:
                        size = store.blob_path(digest).stat().st_size
                        yield layer_status(digest, size, size)
                yield from ({"status": "verifying sha256 digest"},
                            {"status": "writing manifest"}, {"status": "success"})
            elif event.kind == "error":
                raise EngineFailure(event.message)
            else:
                yield {"status": event.message}
    finally:
        close = getattr(events, "close", None)
        if close is not None:  # client gone: release the partial download now
            close()


def register(app) -> None:
    from . import ollama_create  # noqa: F401  (its routes join this blueprint)

    claim_unrouted(app, r"^/api(/|$)", error_response)

    app.register_blueprint(bp)
