"""Writes the OpenAPI document of every route: `python -m server.openapi_doc > docs/openapi.json`.

It builds an app, so it sits above the app factory; api/openapi.py only describes the app it is
given (moved from there so that the API floor does not import the app factory above it).
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

from flask import Flask

from .api.openapi import render
from .app import create_app
from .config import Settings


def standalone_app() -> Flask:
    """An app with every route but no model store contents, only to list routes."""
    models_dir = Path(tempfile.mkdtemp(prefix="dmr-openapi-"))
    atexit.register(shutil.rmtree, models_dir, ignore_errors=True)
    return create_app(Settings(models_dir=models_dir, import_default_model=False, threads=1))


if __name__ == "__main__":
    sys.stdout.write(render(standalone_app()))
