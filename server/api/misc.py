"""Server-level routes: /, /health, /version, /info."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, redirect

from .. import __version__
from ..core.runtime import KNOWN_ENGINES
from ..state import current
from .dashboard import wants_html

bp = Blueprint("misc", __name__)


@bp.get("/")
def root():
    """DMR's text for clients; a browser is sent to the dashboard."""
    if wants_html():
        return redirect("/ui", code=302)
    return Response("Docker Model Runner is running", mimetype="text/plain")


@bp.get("/health")
def health():
    return jsonify({"status": "ok"})


@bp.get("/version")
def version():
    return jsonify({"version": __version__})


@bp.get("/info")
def info():
    state = current()
    s = state.settings
    loaded = {(e.stored.id, e.engine): e for e in state.runtime.loaded()}
    return jsonify({
        "name": "litellm-dmr",
        "version": __version__,
        "uptime_seconds": round(time.time() - state.started_at, 1),
        "engines": {name: ("installed" if name in state.runtime.engines else "not installed")
                    for name in KNOWN_ENGINES},
        "settings": {"context_size": s.context_size, "parallel": s.parallel,
                     "threads": s.threads, "keep_alive": s.keep_alive,
                     "models_dir": str(s.models_dir)},
        "models": [
            {"id": m.id, "tags": m.tags, "size": m.size,
             "loaded": [engine for (mid, engine) in loaded if mid == m.id]}
            for m in state.store.list()
        ],
    })
