"""DMR's progress stream for pulls, pushes and loads: one JSON object per line.

`{"type":"progress","message":"Downloaded: 12.34 MB","total":N,"layer":{"id","size","current"},
"mode":"pull"}` ... then `{"type":"success",...}`, or `{"type":"error",...}` with HTTP 200 when
something fails after the stream began. Like DMR, the body is `application/json` only when the
request sends `Accept: application/json`; otherwise it is `text/plain` with HTML-escaped lines.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, request

from ..core.errors import DMRError
from ..store.progress import PULL, PUSH, Event, LayerProgress, Notice

log = logging.getLogger(__name__)

_VERBS = {PULL: "Downloaded", PUSH: "Uploaded"}


def line(event: Event) -> dict[str, Any]:
    if isinstance(event, LayerProgress):
        return {
            "type": "progress",
            "message": f"{_VERBS[event.mode]}: {event.current / 1024 / 1024:.2f} MB",
            "total": event.total,
            "layer": {"id": event.layer, "size": event.layer_size, "current": event.current},
            "mode": event.mode,
        }
    return {"type": event.kind, "message": event.message, "total": 0,
            "layer": {"size": 0, "current": 0}, "mode": event.mode}


def _go_html_escape(text: str) -> str:
    """Go's html.EscapeString, which DMR's CLI undoes."""
    return (text.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;")
            .replace(">", "&gt;").replace('"', "&#34;"))


def stream(events: Iterable[Event], mode: str) -> Response:
    """A streamed response of progress lines; errors mid-stream become an error line."""
    as_json = request.headers.get("Accept", "") == "application/json"

    def body() -> Iterator[str]:
        try:
            for event in events:
                yield encode(line(event))
        except DMRError as exc:
            log.warning("%s failed: %s", mode, exc.message)
            yield encode(line(Notice("error", f"Error: {exc.message}", mode)))
        except Exception as exc:  # never leave the client without a last word
            log.exception("%s failed", mode)
            yield encode(line(Notice("error", f"Error: {exc}", mode)))
        finally:
            close = getattr(events, "close", None)
            if close is not None:  # client gone: release the partial blob's lock now
                close()

    def encode(obj: dict[str, Any]) -> str:
        text = json.dumps(obj, separators=(",", ":")) + "\n"
        return text if as_json else _go_html_escape(text)

    return Response(body(), status=200,
                    mimetype="application/json" if as_json else "text/plain",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
