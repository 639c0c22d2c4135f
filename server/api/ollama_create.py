"""Ollama's model building routes: /api/blobs/:digest, /api/create and /api/push.

`ollama.create(model=..., from_=..., files=..., system=..., parameters=...)` and tools that
build a model from a GGUF plus a system prompt work as against Ollama: upload the GGUF with
`POST /api/blobs/sha256:...` (the digest is checked), then create a model from it (or from a
stored model) with default settings of its own (store/create.py); `/api/push` sends a model to
an OCI registry through the store. Progress streams as Ollama's NDJSON status lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response, jsonify, request

from ..core import template_caps as chat_template
from ..core.errors import DMRError, InvalidRequest, NotSupported
from ..core.types import Message
from ..state import current
from ..store import reference
from ..store.artifact import check_digest
from ..store.create import Recipe, build
from ..store.errors import DigestMismatch
from ..store.model_defaults import ModelDefaults, from_ollama
from ..store.progress import LayerProgress
from ..store.push import prepare_push
from .ollama import NDJSON, bp, ndjson
from .sse import streaming_response
from .validation import json_body, validate

# ------------------------------------------------------------------------------ blobs


@bp.route("/blobs/<digest>", methods=["HEAD"])
def blob_exists(digest: str):
    """200 when the server holds the blob, 404 when it does not (Ollama's check)."""
    store = current().store
    check_digest(digest)
    return Response(status=200 if store.has_blob(digest) else 404)


@bp.post("/blobs/<digest>")
def blob_upload(digest: str):
    """Store the request body as blob `digest`; 400 when its bytes hash to another digest."""
    check_digest(digest)
    store = current().store
    request.max_content_length = 1 << 50  # a GGUF is as big as the model
    if store.has_blob(digest):
        request.stream.read()  # already here (Ollama answers the same)
        return Response(status=201)
    with store.partial_blob(digest) as blob:
        if not blob.done:
            blob.restart()  # an upload always sends the whole blob
            while chunk := request.stream.read(1 << 20):
                blob.write(chunk)
            try:
                blob.commit()
            except DigestMismatch as exc:
                raise InvalidRequest(f"digest mismatch: {exc.message}", param="digest") from exc
    return Response(status=201)


# ------------------------------------------------------------------------------ create


def _template(text: str | None) -> str | None:
    """A Jinja chat template is kept; Ollama's Go templates cannot drive this server's chat
    formatting, so they are refused rather than ignored."""
    if text is None or not text.strip():
        return None
    if "{{ ." in text or "{{- ." in text or "{{ if ." in text or "{{- if ." in text:
        raise NotSupported("template: this is an Ollama (Go) template; this server formats "
                           "chats with Jinja templates (the GGUF's own by default). Leave "
                           "template out to keep the model's, or give a Jinja chat template",
                           param="template")
    try:
        chat_template.render(text, [Message("user", "Hello")], add_generation_prompt=True)
    except Exception as exc:
        raise InvalidRequest(f"template: not a usable Jinja chat template ({exc})",
                             param="template") from exc
    return text


def _recipe(body: dict[str, Any]) -> Recipe:
    store = current().store
    name = body.get("model") or body.get("name")
    reference.parse(name)  # 400 for a bad name before anything is written
    if body.get("quantize"):
        raise NotSupported(f"quantize: this server does not quantize models (asked for "
                           f"{body['quantize']!r}); quantize the GGUF first, e.g. with "
                           "llama.cpp's llama-quantize, then create from it", param="quantize")
    if body.get("adapters"):
        raise NotSupported("adapters: LoRA adapters are not supported by this server",
                           param="adapters")
    if body.get("messages"):
        raise NotSupported("messages: starting conversations are not supported; give a system "
                           "prompt instead", param="messages")
    recipe = Recipe(name=name)
    files = body.get("files") or {}
    ggufs = [digest for file_name, digest in files.items() if file_name.lower().endswith(".gguf")]
    others = [file_name for file_name in files if not file_name.lower().endswith(".gguf")]
    if others:
        raise NotSupported(f"files: only GGUF files can be imported, not {others[0]!r} "
                           "(safetensors need converting to GGUF first)", param="files")
    if len(ggufs) > 1:
        raise NotSupported("files: one GGUF file per model (split GGUFs are not supported "
                           "here)", param="files")
    source = body.get("from")
    if ggufs:
        recipe.weights = check_digest(ggufs[0])
    elif source and source.startswith("sha256:"):
        recipe.weights = check_digest(source)  # `from` a blob, as older clients send
    elif source:
        recipe.base = store.get(source)
    else:
        raise InvalidRequest("give `from` (a model or an uploaded GGUF blob) or `files`",
                             param="from")
    parameters = dict(body.get("parameters") or {})
    if parameters.get("num_ctx") is not None:
        value = parameters["num_ctx"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest("parameters.num_ctx must be a positive number of tokens",
                                 param="parameters")
        recipe.context_size = value
    defaults = from_ollama(parameters)
    if body.get("system") is not None:
        defaults = ModelDefaults(system=body["system"]).over(defaults)
    recipe.defaults = defaults
    recipe.template = _template(body.get("template"))
    licenses = body.get("license")
    recipe.licenses = [licenses] if isinstance(licenses, str) else list(licenses or [])
    return recipe


@bp.post("/create")
def create():
    """Create a model from a stored model or an uploaded GGUF, with its own defaults."""
    body = json_body()
    validate("ollama_create", body)
    recipe = _recipe(body)  # everything checkable is checked before the stream starts
    store = current().store

    def lines() -> Iterator[dict[str, Any]]:
        for status in build(store, recipe):
            yield {"status": status}
        yield {"status": "success"}

    if body.get("stream") is not False:
        return streaming_response(ndjson(lines()), NDJSON)
    return jsonify(list(lines())[-1])


# ------------------------------------------------------------------------------ push


def _push_lines(push) -> Iterator[dict[str, Any]]:
    yield {"status": "retrieving manifest"}
    for event in push.events():
        if isinstance(event, LayerProgress):
            short = event.layer.split(":", 1)[-1][:12]
            yield {"status": f"pushing {short}", "digest": event.layer,
                   "total": event.layer_size, "completed": event.current}
        elif event.kind == "success":
            yield {"status": "pushing manifest"}
            yield {"status": "success"}
        elif event.kind == "error":
            raise DMRError(event.message)


@bp.post("/push")
def push():
    """Push a model to the OCI registry its name points at (insecure: plain HTTP)."""
    body = json_body()
    validate("ollama_model_ref", body)
    name = body.get("model") or body.get("name")
    job = prepare_push(current().store, name, insecure=bool(body.get("insecure")))
    lines = _push_lines(job)
    if body.get("stream") is not False:
        return streaming_response(ndjson(lines), NDJSON)
    return jsonify(list(lines)[-1])  # an error raises, and is answered with its status
