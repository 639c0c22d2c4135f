"""The OpenAI Responses API: stateful, persisted, streamed as OpenAI streams it.

Routes, under /v1, /engines/v1 and /engines/{engine}/v1 (and DMR's /responses and
/engines/responses): POST responses, GET/DELETE responses/{id}, GET responses/{id}/input_items,
POST responses/{id}/cancel and POST responses/input_tokens. A request's conversation is the
items of its `previous_response_id` chain plus its own input (responses_input.py); the core
generates; the encoder (responses_codec.py) turns the events into OpenAI's stream and response
object. Responses with `store` (the default) go to the persistent, bounded store
(server/store/responses_store.py) with their input items, so chains survive restarts.
Errors use OpenAI's shape, as the rest of the OpenAI dialect.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from ..core import pipeline, truncation
from ..core.errors import DMRError, InvalidRequest, NotFound
from ..state import current
from ..store.responses_store import ResponseStore
from . import responses_input as inputs
from .common import check_engine_segment, install_error_handlers
from .keepalive import HEARTBEAT, with_heartbeats
from .openai import error_response
from .openai_codec import error_body
from .recorder import record
from .responses_background import Job, Jobs
from .responses_codec import ResponseEncoder, new_response
from .sse import sse_event, streaming_response
from .validation import json_body, validate

log = logging.getLogger(__name__)

bp = Blueprint("responses", __name__)
bp.before_request(check_engine_segment)

#: Seconds without an event after which a stream sends an SSE comment (clients skip it).
HEARTBEAT_INTERVAL = 10.0
_KEEPALIVE = ": keep-alive\n\n"
#: Longest previous_response_id chain followed.
MAX_CHAIN = 100_000
_FINAL = ("completed", "incomplete", "failed", "cancelled")


@dataclass
class Service:
    store: ResponseStore
    jobs: Jobs


def _service() -> Service:
    return current_app.extensions["dmr_responses"]


install_error_handlers(bp, error_response, "Responses")


def _code(exc: DMRError) -> str | None:
    error = error_body(exc)["error"]
    return error.get("code") or error.get("type")


# ------------------------------------------------------------------------------ the store


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.")


def _stored(service: Service, response_id: str) -> dict[str, Any]:
    record = service.store.get(response_id)
    if record is None:
        raise _not_found(response_id)
    return record


def _as_stored(record: dict[str, Any]) -> dict[str, Any]:
    """The stored response; one still queued or running with no job in this process was cut
    short by a restart."""
    response = record["response"]
    if response["status"] not in _FINAL:
        response = {**response, "status": "failed", "error": {
            "code": "server_error",
            "message": "the server restarted before this background response finished"}}
    return response


def _conversation(service: Service, previous_id: str | None) -> list[dict[str, Any]]:
    """Input and output items of the `previous_response_id` chain, oldest first."""
    chain: list[dict[str, Any]] = []
    response_id = previous_id
    while response_id and len(chain) < MAX_CHAIN:
        record = service.store.get(response_id)
        if record is None:
            if not chain:
                raise NotFound(f"Previous response with id '{response_id}' not found.",
                               param="previous_response_id", code="previous_response_not_found")
            raise NotFound(f"Response '{response_id}', earlier in the previous_response_id "
                           "chain, has expired or was evicted from the store; start a new "
                           "conversation or send the history as input",
                           param="previous_response_id", code="previous_response_not_found")
        if not chain and record["response"]["status"] not in _FINAL:
            raise InvalidRequest(f"Previous response '{response_id}' is still in progress; "
                                 "wait for it to finish", param="previous_response_id")
        chain.append(record)
        response_id = record["response"].get("previous_response_id")
    items: list[dict[str, Any]] = []
    for record in reversed(chain):
        items += record["input_items"]
        items += record["response"]["output"]
    return items


def _save(service: Service, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
    if response["store"]:
        service.store.put(response["id"], {"response": response, "input_items": input_items})


# ------------------------------------------------------------------------------ create


@dataclass
class Prepared:
    body: dict[str, Any]
    req: Any
    options: inputs.Options
    input_items: list[dict[str, Any]]


def _prepare(body: dict[str, Any], engine: str | None, service: Service) -> Prepared:
    history = _conversation(service, body.get("previous_response_id"))
    own = inputs.normalize_input(body["input"])
    own = inputs.resolve_references(own, history)
    req, options = inputs.build(body, engine, history + own)
    return Prepared(body, req, options, own)


def _start(prepared: Prepared) -> pipeline.Run:
    runtime = current().runtime
    req = prepared.req
    if prepared.options.truncation == "auto":
        req = truncation.fit(runtime, req, req.sampling.max_tokens or 0)
    return pipeline.start_chat(runtime, req)


def _sse(event: dict[str, Any]) -> str:
    return sse_event(event["type"], event)


@bp.post("/responses")
@record("responses")
def create_response(engine: str | None = None):
    """Create a model response (OpenAI Responses API)."""
    body = json_body()
    validate("openai_responses", body)
    service = _service()
    prepared = _prepare(body, engine, service)
    response_id = inputs.new_id("resp")
    if body.get("background"):
        return _create_background(prepared, service, response_id)
    run = _start(prepared)
    encoder = ResponseEncoder(new_response(body, response_id, "in_progress"), prepared.options)
    if body.get("stream"):
        return streaming_response(_stream(run, encoder, prepared, service),
                                  "text/event-stream", on_close=run.close)
    try:
        for _ in encoder.start():
            pass
        for event in run.events:
            for _ in encoder.feed(event):
                pass
        for _ in encoder.finish():
            pass
    finally:
        run.close()
    _save(service, encoder.response, prepared.input_items)
    return jsonify(encoder.response)


def _stream(run: pipeline.Run, encoder: ResponseEncoder, prepared: Prepared,
            service: Service) -> Iterator[str]:
    events = with_heartbeats(run.events, HEARTBEAT_INTERVAL)
    try:
        for out in encoder.start():
            yield _sse(out)
        for event in events:
            if event is HEARTBEAT:
                yield _KEEPALIVE
                continue
            for out in encoder.feed(event):
                yield _sse(out)
        for out in encoder.finish():
            yield _sse(out)
    except DMRError as exc:  # after the 200: reported in-band, as OpenAI does
        for out in encoder.fail(exc, _code(exc)):
            yield _sse(out)
    except Exception as exc:
        log.exception("Responses stream failed")
        for out in encoder.fail(DMRError(f"internal server error: {exc}"), None):
            yield _sse(out)
    finally:
        events.close()
        if encoder.response["status"] in _FINAL:  # not when the client left mid-stream
            _save(service, encoder.response, prepared.input_items)


def _create_background(prepared: Prepared, service: Service, response_id: str) -> Response:
    body = prepared.body
    if body.get("store") is False:
        raise InvalidRequest("background responses must be stored: remove store: false",
                             param="store")
    run = _start(prepared)
    encoder = ResponseEncoder(new_response(body, response_id, "queued"), prepared.options)
    job = Job(encoder, run, _code, lambda response: _save(service, response,
                                                          prepared.input_items))
    queued = job.snapshot()
    _save(service, queued, prepared.input_items)
    service.jobs.add(job)
    job.start()
    if body.get("stream"):
        return streaming_response(_follow(job, -1), "text/event-stream")
    return jsonify(queued)


def _follow(job: Job, after: int) -> Iterator[str]:
    for event in job.follow(after, HEARTBEAT_INTERVAL):
        yield _KEEPALIVE if event is HEARTBEAT else _sse(event)


# ------------------------------------------------------------------------------ read, delete


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, got {raw!r}", param=name) from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}", param=name)
    return value


@bp.get("/responses/<response_id>")
def get_response(response_id: str, engine: str | None = None):
    """Retrieve a stored response; `?stream=true` streams its events (after `starting_after`)."""
    service = _service()
    stream = request.args.get("stream", "").lower() in ("true", "1")
    after = _int_arg("starting_after", -1, -1, 1 << 31)
    job = service.jobs.get(response_id)
    if job is not None:
        if stream:
            return streaming_response(_follow(job, after), "text/event-stream")
        return jsonify(job.snapshot())
    response = _as_stored(_stored(service, response_id))
    if not stream:
        return jsonify(response)
    started = {**response, "output": [], "status": "in_progress", "usage": None,
               "error": None, "incomplete_details": None, "completed_at": None}
    replay = ResponseEncoder(started).replay(response)
    return streaming_response((_sse(e) for e in replay if e["sequence_number"] > after),
                              "text/event-stream")


@bp.delete("/responses/<response_id>")
def delete_response(response_id: str, engine: str | None = None):
    """Delete a stored response (a running background one is cancelled first)."""
    service = _service()
    job = service.jobs.get(response_id)
    if job is not None:
        job.cancel()
        service.jobs.remove(response_id)
    if not service.store.delete(response_id) and job is None:
        raise _not_found(response_id)
    return jsonify({"id": response_id, "object": "response", "deleted": True})


@bp.post("/responses/<response_id>/cancel")
def cancel_response(response_id: str, engine: str | None = None):
    """Cancel a background response (cancelling a finished one changes nothing)."""
    service = _service()
    job = service.jobs.get(response_id)
    if job is not None:
        job.cancel()
        return jsonify(job.snapshot())
    response = _as_stored(_stored(service, response_id))
    if not response.get("background"):
        raise InvalidRequest("Only background responses can be cancelled.")
    return jsonify(response)


@bp.get("/responses/<response_id>/input_items")
def list_input_items(response_id: str, engine: str | None = None):
    """The input items of a stored response, paginated as OpenAI lists them."""
    items = list(_stored(_service(), response_id)["input_items"])
    limit = _int_arg("limit", 20, 1, 100)
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
    if order == "desc":
        items.reverse()
    ids = [item.get("id") for item in items]
    for name, step in (("after", 1), ("before", 0)):
        cursor = request.args.get(name)
        if cursor:
            if cursor not in ids:
                raise InvalidRequest(f"{name}: no input item with id {cursor!r}", param=name)
            i = ids.index(cursor)
            items, ids = (items[i + 1:], ids[i + 1:]) if step else (items[:i], ids[:i])
    page = items[:limit]
    return jsonify({"object": "list", "data": page,
                    "first_id": page[0].get("id") if page else None,
                    "last_id": page[-1].get("id") if page else None,
                    "has_more": len(items) > limit})


@bp.post("/responses/input_tokens")
def count_input_tokens(engine: str | None = None):
    """Count the input tokens a response request would use."""
    body = json_body()
    validate("openai_responses_input_tokens", body)
    service = _service()
    history = _conversation(service, body.get("previous_response_id"))
    own = inputs.resolve_references(inputs.normalize_input(body.get("input") or []), history)
    req, options = inputs.build(body, engine, history + own, require_input=False)
    runtime = current().runtime
    if options.truncation == "auto":
        req = truncation.fit(runtime, req)
    return jsonify({"object": "response.input_tokens",
                    "input_tokens": pipeline.count_chat_tokens(runtime, req)})


def register(app, store: ResponseStore) -> None:
    """Mount the API where OpenAI's SDKs (base URL .../v1) and DMR's clients look for it."""
    app.extensions["dmr_responses"] = Service(store, Jobs())
    for prefix, name in (("/v1", "openai_responses_v1"),
                         ("/engines/v1", "openai_responses_engines"),
                         ("/engines/<engine>/v1", "openai_responses_engine"),
                         ("/engines", "openai_responses_dmr_engines"),
                         ("", "openai_responses_dmr")):
        app.register_blueprint(bp, url_prefix=prefix, name=name)
