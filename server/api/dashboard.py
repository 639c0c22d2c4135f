"""GET /ui: the web dashboard, plain HTML, CSS and JavaScript shipped in the package (ui/).

No CDN and no third-party code: the page works offline and loads nothing but these files
and the server's own API. It needs no API key to load (a browser cannot send one when it
opens a page, and the files hold no data); every call it makes sends the key kept in the
browser. A strict Content-Security-Policy allows nothing but this origin.
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, abort, request

bp = Blueprint("dashboard", __name__)

UI_DIR = resources.files(__package__) / "ui"
#: The files served, and their media types (nothing else under ui/ is reachable).
FILES = {"index.html": "text/html", "app.js": "text/javascript", "charts.js": "text/javascript",
         "style.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    body = (UI_DIR / name).read_bytes()
    return Response(body, mimetype=FILES[name], headers=HEADERS)


@bp.get("/ui")
@bp.get("/ui/")
def index():
    """The dashboard: models, runners, live requests, charts and a chat playground."""
    return _file("index.html")


@bp.get("/ui/<name>")
def asset(name: str):
    """One of the dashboard's files."""
    if name not in FILES:
        abort(404)
    return _file(name)


def wants_html() -> bool:
    """A browser's navigation (it prefers HTML), not curl or an SDK."""
    best = request.accept_mimetypes.best_match(["text/html", "text/plain"])
    return best == "text/html" and request.accept_mimetypes["text/html"] > \
        request.accept_mimetypes["text/plain"]
