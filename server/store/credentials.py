"""Registry credentials from Docker's own config file, so `docker login` works for us too.

Reads `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), key `auths`, entries with
`auth` (base64 `user:password`) or `username`/`password`. Credential helpers are not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io",
                   "registry-1.docker.io")


def _config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(Path.home(), ".docker")
    return Path(base) / "config.json"


def lookup(host: str) -> tuple[str, str] | None:
    """(username, password) for a registry host, or None."""
    try:
        auths = json.loads(_config_path().read_text()).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return None
    keys = DOCKER_HUB_KEYS if host in DOCKER_HUB_KEYS else (
        host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/")
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                continue
            return user, password
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None
