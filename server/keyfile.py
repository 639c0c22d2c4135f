"""The API key `dmr serve` generates when it listens beyond loopback and none is configured.

Users bind 0.0.0.0 to reach the server from a phone, a container or another machine; without a
key, everyone on that network could then use and manage the models. So a random key is made
once, kept in the models directory with 0600 permissions (the next start reuses it, so clients
keep working), printed at start with the URL to use, as Jupyter prints its token, and
required. `dmr` client commands on this machine read it from there.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
from pathlib import Path

FILE_NAME = "api-key"
PREFIX = "dmr-"


def key_path(models_dir: str | os.PathLike) -> Path:
    return Path(models_dir) / FILE_NAME


def read_key(models_dir: str | os.PathLike) -> str | None:
    """The stored key, or None when there is none (or it is not ours to read)."""
    try:
        text = key_path(models_dir).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def load_or_create(models_dir: str | os.PathLike) -> tuple[str, bool]:
    """(key, created): the stored key with its mode tightened to 0600, or a new one written
    atomically with that mode from the first byte."""
    path = key_path(models_dir)
    existing = read_key(models_dir)
    if existing:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
        return existing, False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = PREFIX + secrets.token_urlsafe(32)
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(key + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return key, True


def reachable_address(bind_host: str) -> str:
    """An address other machines can use for a server bound to `bind_host`: itself, or for a
    wildcard bind the address of the interface that routes outwards (a UDP connect sends
    nothing), else the host name."""
    if bind_host not in ("0.0.0.0", "::", "[::]", ""):
        return f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") \
            else bind_host
    family, probe = ((socket.AF_INET6, "2001:db8::1") if bind_host in ("::", "[::]")
                     else (socket.AF_INET, "192.0.2.1"))
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            address = sock.getsockname()[0]
    except OSError:
        return socket.gethostname() or "127.0.0.1"
    return f"[{address}]" if family == socket.AF_INET6 else address


def banner(key: str, created: bool, url: str, path: Path) -> str:
    """What `dmr serve` prints once at start: the key, where it lives and how to use it."""
    origin = "generated" if created else "reused"
    return "\n".join([
        f"dmr: listening beyond this machine, so every request needs an API key ({origin}, "
        f"stored in {path}, mode 0600):",
        f"    {key}",
        f"  OpenAI base URL:  {url}/engines/v1   (Authorization: Bearer <key>, or x-api-key)",
        f"  Dashboard:        {url}/ui#key={key}",
        "  Set api_keys (DMR_API_KEYS) to choose your own keys, or --no-auth to serve without.",
    ])
