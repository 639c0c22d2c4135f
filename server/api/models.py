"""DMR's model routes, native and OpenAI.

Native: GET /models[/{name}], POST /models/create (pull, progress lines), POST /models/load
(a `dmr package` archive), POST /models/{name}/tag, POST /models/{name}/push, DELETE
/models/{name}, DELETE /models/purge. OpenAI: GET .../v1/models[/{name}].

DMR answers its native routes' errors in plain text (`model not found`), and its OpenAI model
routes in OpenAI's error shape. What a deletion, purge or pull does is decided in
core/management.py (the same for Ollama's routes); these routes translate.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..core import management
from ..core.chat_formats.detect import describe
from ..core.errors import DMRError, InvalidRequest, ModelNotFound, NotFound
from ..state import current
from ..store import reference, tarball
from ..store.progress import PULL, PUSH, Notice
from ..store.push import prepare_push
from ..store.store import StoredModel
from . import dmr_progress, ollama_models, openai, remote
from .common import install_error_handlers, plain_error
from .validation import json_body, validate

native = Blueprint("dmr_models", __name__)
openai_models = Blueprint("openai_models", __name__)


install_error_handlers(native, plain_error, "DMR models")
install_error_handlers(openai_models, openai.error_response, "OpenAI models")


def native_json(model: StoredModel) -> dict[str, Any]:
    return {"id": model.id, "tags": model.tags, "created": model.created, "config": model.config}


def openai_json(model: StoredModel) -> dict[str, Any]:
    config = model.config
    return {
        "id": model.name,
        "object": "model",
        "created": model.created,
        "owned_by": "docker",
        "dmr": {
            "context_window": config.get("context_size")
            or _int(config.get("gguf", {}).get(f"{config.get('architecture')}.context_length")),
            "architecture": config.get("architecture"),
            "parameters": config.get("parameters"),
            "quantization": config.get("quantization"),
            "size": config.get("size"),
        },
    }


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _find(name: str) -> StoredModel:
    model = current().store.find(name)
    if model is None:
        raise ModelNotFound(name)
    return model


@native.get("/models")
def list_models():
    state = current()
    return jsonify([native_json(m) for m in state.store.list()]
                   + remote.native_models(state.runtime))


@native.get("/models/<path:name>")
def get_model(name: str):
    """A model: DMR's JSON, plus (ours) the chat format detected from its template (the
    tool-call and reasoning syntax the server reads, docs/models.md) and the default request
    settings it carries, each with where it comes from (store/model_defaults.py)."""
    model = _find(name)
    body = {**native_json(model),
            "defaults": current().runtime.model_defaults(model).to_json()}
    try:
        body["chat_format"] = describe(ollama_models.chat_template(model))
    except (OSError, ValueError):  # an unreadable GGUF header: inspect still answers
        pass
    return jsonify(body)


@openai_models.get("/models")
def openai_list(engine: str | None = None):
    state = current()
    return jsonify({"object": "list", "data": [openai_json(m) for m in state.store.list()]
                    + remote.openai_models(state.runtime)})


@openai_models.get("/models/<path:name>")
def openai_get(name: str, engine: str | None = None):
    found = remote.openai_model(current().runtime, name)
    if found is not None:
        return found
    model = _find(name)
    out = openai_json(model)
    out["dmr"]["defaults"] = current().runtime.model_defaults(model).defaults.values()
    return jsonify(out)


def register(app) -> None:
    app.register_blueprint(native)
    # DMR ignores the engine segment on model listings.
    app.register_blueprint(openai_models, url_prefix="/engines/v1", name="models_engines")
    app.register_blueprint(openai_models, url_prefix="/engines/<engine>/v1", name="models_engine")
    app.register_blueprint(openai_models, url_prefix="/v1", name="models_v1")


# ------------------------------------------------------------------------ pull, load, push


def _dmr_status_text(exc: DMRError) -> DMRError:
    """DMR's words for the statuses clients test for, with our detail after them."""
    prefix = {400: "Invalid model reference", 401: "Unauthorized", 404: "Model not found"}
    head = prefix.get(exc.status)
    if head and not exc.message.startswith(head):
        exc.message = head if exc.message == head else f"{head}: {exc.message}"
    return exc


@native.post("/models/create")
def create_model():
    body = json_body()
    validate("dmr_create", body)
    try:
        events = management.pull(current().runtime, body["from"],
                                 body.get("bearer-token") or None)
    except DMRError as exc:
        raise _dmr_status_text(exc) from exc
    return dmr_progress.stream(events, PULL)


@native.post("/models/load")
def load_model():
    request.max_content_length = 1 << 50  # a model archive is as big as the model
    model = tarball.load(current().store, request.stream)
    done = Notice("success", f"Model loaded successfully: {model.id}", PULL)
    return dmr_progress.stream([done], PULL)


@native.post("/models/<path:name>/push")
def push_model(name: str):
    raw = request.get_data(cache=True)
    body = json_body() if raw.strip() else {}
    validate("dmr_push", body)
    try:
        push = prepare_push(current().store, name, body.get("bearer-token") or None)
    except DMRError as exc:
        raise _dmr_status_text(exc) from exc
    return dmr_progress.stream(push.events(), PUSH)


@native.post("/models/<path:name>/tag")
def tag_model(name: str):
    repo, tag = request.args.get("repo", ""), request.args.get("tag", "")
    if not repo or not tag:
        raise InvalidRequest("missing repo or tag query parameter")
    target = f"{repo}:{tag}"
    reference.parse(target)  # 400 for a bad target before anything changes
    current().store.tag(name, target)
    return jsonify({"message": f'Model tagged successfully with "{target}"',
                    "target": target}), 201


# ------------------------------------------------------------------------ delete


@native.delete("/models/purge")
def purge_models():
    management.purge(current().runtime)
    return Response(status=200)


@native.delete("/models/<path:name>")
def delete_model(name: str):
    force = request.args.get("force", "").lower() in ("1", "true", "yes")
    return jsonify(management.delete(current().runtime, name, force=force).actions)


@native.route("/models/<path:name>", methods=["POST", "PUT", "PATCH"])
def unknown_model_action(name: str):
    raise NotFound(f"unknown action {name.rsplit('/', 1)[-1]!r}")
