"""Errors of the model store and its sources, as members of the server's one hierarchy.

The native routes answer them in DMR's plain text with DMR's statuses (401 Unauthorized,
404 Model not found, 422 unsupported media type); everything else that goes wrong talking to a
registry is a RegistryError (DMR answers 500 with the message).
"""

from __future__ import annotations

from ..core.errors import DMRError, ErrorKind, NotFound, Unauthorized


class RegistryError(DMRError):
    """A registry or Hugging Face answered something we cannot use, or could not be reached."""

    status = 500
    kind = ErrorKind.SERVER_ERROR


class RegistryUnreachable(RegistryError):
    """No connection to the registry at all (offline, DNS, refused)."""


class RemoteNotFound(NotFound):
    """The registry has no such repository, tag or blob."""


class RegistryUnauthorized(Unauthorized):
    """The registry refused our credentials (or wants some and we have none)."""


class UnsupportedMediaType(DMRError):
    """The artifact is not a model we can run (not DMR's nor ModelPack's config, no GGUF)."""

    status = 422
    kind = ErrorKind.INVALID_REQUEST


class DigestMismatch(RegistryError):
    """Downloaded bytes do not hash to the digest the manifest promised: nothing is kept."""


class InsufficientStorage(DMRError):
    """The model does not fit on the disk holding the store (checked before a pull starts,
    and when the disk fills up during one). What was downloaded is kept for the next pull."""

    status = 507
    kind = ErrorKind.INSUFFICIENT_STORAGE
