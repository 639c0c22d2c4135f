"""Where a request goes when a remote engine is configured, and the routes only remote engines
have.

- `/engines/<remote>/v1/...`: OpenAI routes pass through to the engine's upstreams
  (remote_proxy.py), except the Anthropic Messages routes, which the Anthropic dialect
  translates; `/engines/<remote>/v1/models` lists what the upstreams serve.
- Routes without an engine (`/v1/...`, `/engines/v1/...`, `/api/...`): a model that is not in
  the local store but is served by a remote engine goes there; local models win.
- The dialects call `start_chat`, `start_completion`, `embed` and `count_chat_tokens` here
  instead of the pipeline's: for a local model they are the pipeline's.
- `GET /engines/remote`: each upstream with its health, latency and load (`dmr status`).
"""

from __future__ import annotations

import hashlib
import logging
import re

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..core import pipeline
from ..core.errors import DMRError
from ..core.runtime import Runtime
from ..core.types import ChatRequest, CompletionRequest, EmbeddingRequest
from ..engines.remote.engine import RemoteEngine
from ..state import current
from . import openai, remote_chat, remote_proxy
from .common import install_error_handlers

log = logging.getLogger(__name__)

bp = Blueprint("remote", __name__)

_ENGINE_PATH = re.compile(r"^/engines/([^/]+)/v1/(.+)$")
#: Paths under /engines/<remote>/v1/ that a dialect of ours translates instead.
_TRANSLATED = frozenset({"messages", "messages/count_tokens"})
#: OpenAI routes without an engine that follow the model to a remote engine.
_BY_MODEL = re.compile(r"^/(?:engines/)?v1/(chat/completions|completions|embeddings|responses)$")


# ------------------------------------------------------------------------------ routing


def engine_for(runtime: Runtime, engine: str | None, model: str | None) -> RemoteEngine | None:
    """The remote engine a request is for: the one its URL names, else (no engine in the
    URL) the one serving `model` when no local model has that name."""
    remotes = runtime.remotes
    if not remotes:
        return None
    if engine is not None:
        return remotes.get(engine)
    if not model:
        return None
    serving = [e for e in remotes.values() if e.serves(model)]
    if not serving:
        return None
    try:
        if runtime.store.find(model) is not None:
            return None
    except DMRError:  # not a name DMR could store (e.g. a path): cannot be local
        pass
    return serving[0]


def start_chat(runtime: Runtime, req: ChatRequest, stream: bool = True) -> pipeline.Run:
    engine = engine_for(runtime, req.engine, req.model)
    if engine is None:
        return pipeline.start_chat(runtime, req)
    return remote_chat.start_chat(engine, req, stream)


def start_completion(runtime: Runtime, req: CompletionRequest,
                     stream: bool = True) -> pipeline.Run:
    engine = engine_for(runtime, req.engine, req.model)
    if engine is None:
        return pipeline.start_completion(runtime, req)
    return remote_chat.start_completion(engine, req, stream)


def embed(runtime: Runtime, req: EmbeddingRequest) -> pipeline.Embeddings:
    engine = engine_for(runtime, req.engine, req.model)
    if engine is None:
        return pipeline.embed(runtime, req)
    return remote_chat.embed(engine, req)


def count_chat_tokens(runtime: Runtime, req: ChatRequest) -> int:
    engine = engine_for(runtime, req.engine, req.model)
    if engine is None:
        return pipeline.count_chat_tokens(runtime, req)
    return remote_chat.count_chat_tokens(engine, req)


def is_remote_model(runtime: Runtime, name: str | None) -> bool:
    return engine_for(runtime, None, name) is not None


# ------------------------------------------------------------------------------ listings


def openai_models(runtime: Runtime) -> list[dict]:
    """Every remote engine's models for the engine-less OpenAI listings."""
    return remote_proxy.openai_models(list(runtime.remotes.values()))


def openai_model(runtime: Runtime, name: str) -> Response | None:
    engine = engine_for(runtime, None, name)
    return remote_proxy.openai_model(engine, name) if engine is not None else None


def native_models(runtime: Runtime) -> list[dict]:
    return remote_proxy.native_models(list(runtime.remotes.values()))


def ollama_tags(runtime: Runtime) -> list[dict]:
    """Remote models in /api/tags, marked as Ollama marks its cloud models (remote_host)."""
    from .ollama_codec import timestamp

    out = []
    for engine in runtime.remotes.values():
        for model, urls in engine.models():
            out.append({"name": model.id, "model": model.id,
                        "modified_at": timestamp(model.created or 0), "size": 0,
                        "digest": hashlib.sha256(model.id.encode()).hexdigest(),
                        "remote_model": model.id, "remote_host": urls[0],
                        "details": {"parent_model": "", "format": "remote", "family": "",
                                    "families": None, "parameter_size": "",
                                    "quantization_level": "", "backend": engine.name}})
    return out


# ------------------------------------------------------------------------------ passthrough


def _intercept() -> Response | None:
    """before_request: OpenAI traffic for a remote engine never reaches the local dialect.
    Its errors are raised: the matched route's blueprint (OpenAI's) shapes them."""
    runtime = current().runtime
    if not runtime.remotes:
        return None
    match = _ENGINE_PATH.match(request.path)
    if match and match.group(1) in runtime.remotes:
        engine, rest = runtime.remotes[match.group(1)], match.group(2)
        if rest in _TRANSLATED or request.method == "OPTIONS":
            return None
        if request.method == "GET" and rest == "models":
            return jsonify({"object": "list",
                            "data": remote_proxy.openai_models([engine])})
        if request.method == "GET" and rest.startswith("models/"):
            return remote_proxy.openai_model(engine, rest[len("models/"):])
        return remote_proxy.passthrough(engine, rest)
    by_model = _BY_MODEL.match(request.path)
    if by_model and request.method == "POST" and request.is_json:
        body = request.get_json(silent=True, cache=True)
        model = body.get("model") if isinstance(body, dict) else None
        engine = engine_for(runtime, None, model if isinstance(model, str) else None)
        if engine is not None:
            return remote_proxy.passthrough(engine, by_model.group(1))
    return None


#: Registered only when remote engines are configured.
passthrough_bp = Blueprint("remote_passthrough", __name__)
install_error_handlers(passthrough_bp, openai.error_response, "OpenAI passthrough")


@passthrough_bp.route("/engines/<engine>/v1/<path:rest>", methods=["GET", "POST", "DELETE"])
def any_route(engine: str, rest: str):
    """Any OpenAI route of a remote engine, passed through to its upstreams. (The hook above
    forwards these before routing gets here; the rule gives CORS preflights a route.)"""
    remote = current().runtime.remotes.get(engine)
    if remote is None:
        _not_found_or_not_allowed()
    return remote_proxy.passthrough(remote, rest)


def _not_found_or_not_allowed() -> None:
    """For other engines this rule must not change what they answered without it: 405 when
    another route has the path with other methods, else 404."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = set()
    for method in ("GET", "POST", "DELETE", "PUT", "PATCH"):
        try:
            endpoint, _ = adapter.match(method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            allowed.add(method)
    if allowed:
        raise MethodNotAllowed(sorted(allowed))
    abort(404)


# ------------------------------------------------------------------------------ status


@bp.get("/engines/remote")
def remote_status():
    """Ours, not DMR's: every remote engine's upstreams, health, latency and load."""
    return jsonify({name: engine.status() for name, engine in current().runtime.remotes.items()})


def status_text(engine: RemoteEngine) -> str:
    """The engine's line in /engines/status (DMR's `"Running: <details>"` strings)."""
    status = engine.status()
    parts = []
    for up in status["upstreams"]:
        if up["state"] == "up":
            latency = f", {up['latency_ms']:.0f} ms" if up["latency_ms"] is not None else ""
            parts.append(f"{up['url']} up{latency}")
        else:
            why = f": {up['last_error']}" if up["last_error"] else ""
            parts.append(f"{up['url']} {up['state']}{why}")
    healthy, total = status["healthy"], len(status["upstreams"])
    state = "Running" if healthy else "Error"
    return f"{state}: remote, {healthy}/{total} upstreams up; " + "; ".join(parts)


def register(app: Flask, remotes: dict[str, RemoteEngine]) -> None:
    """Call after the security hooks: keys and CORS apply to forwarded requests too."""
    app.before_request(_intercept)
    app.register_blueprint(bp)
    if remotes:
        app.register_blueprint(passthrough_bp)
