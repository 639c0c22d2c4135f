"""DMR's model routes: GET /models[/{name}] (native) and GET .../v1/models[/{name}] (OpenAI).

DMR answers its native routes' errors in plain text (`model not found`), and its OpenAI model
routes in OpenAI's error shape.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

from ..core.errors import DMRError, ModelNotFound
from ..state import current
from ..store.store import StoredModel
from . import openai

native = Blueprint("dmr_models", __name__)
openai_models = Blueprint("openai_models", __name__)


def plain_error(exc: DMRError) -> Response:
    return Response(exc.message + "\n", status=exc.status, mimetype="text/plain")


@native.errorhandler(DMRError)
def _native_error(exc: DMRError):
    return plain_error(exc)


@native.errorhandler(HTTPException)
def _native_http_error(exc: HTTPException):
    return Response((exc.description or exc.name) + "\n", status=exc.code or 500,
                    mimetype="text/plain")


openai_models.register_error_handler(DMRError, openai.error_response)


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
    return jsonify([native_json(m) for m in current().store.list()])


@native.get("/models/<path:name>")
def get_model(name: str):
    return jsonify(native_json(_find(name)))


@openai_models.get("/models")
def openai_list(engine: str | None = None):
    return jsonify({"object": "list", "data": [openai_json(m) for m in current().store.list()]})


@openai_models.get("/models/<path:name>")
def openai_get(name: str, engine: str | None = None):
    return jsonify(openai_json(_find(name)))


def register(app) -> None:
    app.register_blueprint(native)
    # DMR ignores the engine segment on model listings.
    app.register_blueprint(openai_models, url_prefix="/engines/v1", name="models_engines")
    app.register_blueprint(openai_models, url_prefix="/engines/<engine>/v1", name="models_engine")
    app.register_blueprint(openai_models, url_prefix="/v1", name="models_v1")
