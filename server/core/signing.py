"""Signatures for thinking blocks: proof that this server wrote the thinking a client sends back.

Claude signs its thinking blocks and rejects altered ones; we do the same with an HMAC-SHA256
of the thinking text under a key kept next to the model store (`thinking-signing.key`, created
on first use, readable only by its owner). Every server using that store, and every restart,
accepts the signatures of the others; a block whose text was edited, or that another server
(Claude included) signed, is rejected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "thinking-signing.key"
_DOMAIN = b"litellm-dmr thinking v1\0"


class ThinkingSigner:
    def __init__(self, key: bytes):
        self._key = key

    @classmethod
    def for_directory(cls, directory: str | os.PathLike) -> ThinkingSigner:
        return cls(load_or_create_key(Path(directory) / KEY_FILE))

    def sign(self, thinking: str) -> str:
        # surrogatepass: JSON may carry lone surrogates (\ud800), which UTF-8 cannot encode.
        digest = hmac.new(self._key, _DOMAIN + thinking.encode("utf-8", "surrogatepass"),
                          hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def verify(self, thinking: str, signature: str) -> bool:
        # Bytes: compare_digest refuses str with non-ASCII characters.
        return hmac.compare_digest(self.sign(thinking).encode(),
                                   signature.encode("utf-8", "surrogatepass"))


def load_or_create_key(path: Path) -> bytes:
    """The key in `path`, created atomically (first writer wins) when missing."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        os.link(tmp, path)  # fails if another process created the key meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()
