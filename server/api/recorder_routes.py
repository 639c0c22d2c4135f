"""GET /engines/requests: the request recorder's records in DMR's format, or followed live.

JSON: `[{"count", "model" (model ID), "config", "records": [...]}]`, one entry per model,
`?model=` (a name or ID) keeps one. With `Accept: text/event-stream` it follows: `connected`,
then with `?include_existing=true` one `existing_request` per record kept, then one
`new_request` per record as it is made, each data a one-record list in the same format (as
DMR). A comment line every 15 s finds followers that have gone; SIGTERM ends the stream.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request

from .. import lifecycle
from ..state import State, current
from ..store.store import ModelStore
from .common import install_error_handlers, plain_error
from .recorder import Recorder, install
from .sse import sse_event, streaming_response

bp = Blueprint("dmr_requests", __name__)

PING_SECONDS = 15.0


install_error_handlers(bp, plain_error, "DMR requests")


def recorder() -> Recorder:
    return current_app.extensions["dmr.recorder"]


def _group(state: State, model_id: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    config = state.runtime.configs.get(model_id)
    stored = state.store.find(model_id)
    return {"count": len(records), "model": model_id,
            "name": stored.name if stored else None,  # ours: the model's first tag
            "config": config.to_dmr() if config else {}, "records": records}


def _wanted() -> tuple[bool, str | None]:
    """(filtered, model ID): a name nothing matches filters everything out."""
    name = (request.args.get("model") or "").strip()
    if not name:
        return False, None
    stored = current().store.find(name)
    return True, stored.id if stored else None


@bp.get("/engines/requests")
def requests_():
    filtered, model_id = _wanted()
    follow = "text/event-stream" in request.headers.get("Accept", "")
    if follow:
        existing = request.args.get("include_existing", "").lower() in ("1", "true", "yes")
        # the generator runs after the request context is gone: it gets what it needs now
        recorder_ = recorder()
        sub = recorder_.subscribe()  # before existing records are read: none falls between
        return streaming_response(_follow(current(), recorder(), sub, filtered, model_id,
                                          existing), "text/event-stream",
                                  on_close=lambda: recorder_.unsubscribe(sub))
    if filtered and model_id is None:
        return jsonify([])
    state = current()
    return jsonify([_group(state, mid, recs) for mid, recs in recorder().rings(model_id)])


def _follow(state: State, rec: Recorder, sub: queue.Queue, filtered: bool,
            model_id: str | None, existing: bool) -> Iterator[str]:
    try:
        yield sse_event("connected", {"status": "connected"})
        if existing and not (filtered and model_id is None):
            for mid, records in rec.rings(model_id):
                for one in records:
                    yield sse_event("existing_request", [_group(state, mid, [one])])
        waited = 0.0
        while not lifecycle.STOPPING.is_set():
            try:
                mid, one = sub.get(timeout=1.0)
            except queue.Empty:
                waited += 1.0
                if waited >= PING_SECONDS:
                    waited = 0.0
                    yield ": ping\n\n"
                continue
            if filtered and mid != model_id:
                continue
            yield sse_event("new_request", [_group(state, mid, [one])])
    finally:
        rec.unsubscribe(sub)


def register(app: Flask, store: ModelStore, size: int, api_keys: Iterable[str]) -> Recorder:
    """The recorder (records the views marked `@record`), and its route."""
    rec = Recorder(size, secrets=api_keys)

    def find(name: str):
        try:
            return store.find(name)
        except Exception:  # a name that is no reference names no model
            return None

    install(app, rec, find)
    app.extensions["dmr.recorder"] = rec
    app.register_blueprint(bp)
    return rec
