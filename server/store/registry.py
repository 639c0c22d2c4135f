"""A small OCI distribution client: manifests and blobs, down and up.

Speaks HTTPS, or plain HTTP to loopback hosts and to hosts the settings mark insecure. Auth
follows the registry's lead: anonymous first; on a 401 it answers the `WWW-Authenticate`
challenge, Basic with credentials from Docker's config file, or Bearer by fetching a token from
the challenge's realm (with those credentials when there are some, anonymously otherwise). A
caller-supplied bearer token (DMR's `bearer-token`) is sent as is.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import urljoin

import requests

from . import artifact, credentials
from .errors import (
    DigestMismatch,
    RegistryError,
    RegistryUnauthorized,
    RegistryUnreachable,
    RemoteNotFound,
)

DOCKER_HUB = "registry-1.docker.io"
MANIFEST_ACCEPT = ", ".join((artifact.OCI_MANIFEST, artifact.DOCKER_MANIFEST,
                             artifact.OCI_INDEX, artifact.DOCKER_MANIFEST_LIST))
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
TIMEOUT = (10, 60)  # connect, read


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """('bearer', {'realm':..., 'service':..., 'scope':...}) from a WWW-Authenticate header."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


class Registry:
    """One repository on one registry, e.g. `Registry("127.0.0.1:5000", "team/model")`."""

    def __init__(self, host: str, repository: str, *, insecure: bool = False,
                 token: str | None = None, auth: tuple[str, str] | None = None,
                 session: requests.Session | None = None):
        self.host = host or DOCKER_HUB
        self.repository = repository
        scheme = "http" if insecure or is_loopback(self.host) else "https"
        self.root = f"{scheme}://{self.host}"
        self.base = f"{self.root}/v2/{repository}"
        self._auth_header = f"Bearer {token}" if token else None
        self._fixed_token = bool(token)
        self._credentials = auth if auth is not None else credentials.lookup(self.host)
        self._session = session or requests.Session()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ transport and auth

    def _send(self, method: str, url: str, *, push: bool = False, **kwargs: Any
              ) -> requests.Response:
        """Send a request, answering one auth challenge; map failures to store errors."""
        for attempt in range(2):
            headers = dict(kwargs.pop("headers", None) or {})
            if self._auth_header:
                headers["Authorization"] = self._auth_header
            try:
                response = self._session.request(method, url, headers=headers,
                                                 timeout=TIMEOUT, **kwargs)
            except requests.ConnectionError as exc:
                raise RegistryUnreachable(f"cannot reach registry {self.host}: {exc}") from exc
            except requests.RequestException as exc:
                raise RegistryError(f"request to registry {self.host} failed: {exc}") from exc
            if response.status_code != 401 or attempt or self._fixed_token:
                break
            challenge = response.headers.get("WWW-Authenticate", "")
            response.close()
            if not self._authenticate(challenge, push):
                break
            kwargs["headers"] = headers
            body = kwargs.get("data")
            if hasattr(body, "seek"):
                body.seek(0)
        if response.status_code in (401, 403):
            response.close()
            raise RegistryUnauthorized("Unauthorized")
        return response

    def _authenticate(self, challenge: str, push: bool) -> bool:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if not self._credentials:
                return False
            user, password = self._credentials
            self._auth_header = "Basic " + base64.b64encode(
                f"{user}:{password}".encode()).decode()
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        actions = "pull,push" if push else "pull"
        query = {"scope": params.get("scope") or f"repository:{self.repository}:{actions}"}
        if push and not query["scope"].endswith("push"):
            query["scope"] = f"repository:{self.repository}:pull,push"
        if params.get("service"):
            query["service"] = params["service"]
        try:
            answer = self._session.get(params["realm"], params=query, auth=self._credentials,
                                       timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise RegistryError(f"cannot reach the token service {params['realm']}: "
                                f"{exc}") from exc
        if answer.status_code != 200:
            raise RegistryUnauthorized("Unauthorized")
        try:
            body = answer.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise RegistryError(f"token service {params['realm']} returned no token")
        self._auth_header = f"Bearer {token}"
        return True

    def _check(self, response: requests.Response, what: str) -> requests.Response:
        if response.status_code == 404:
            response.close()
            raise RemoteNotFound(f"{what} not found in {self.host}/{self.repository}")
        if response.status_code >= 400:
            text = response.text[:300]
            response.close()
            raise RegistryError(f"registry {self.host} answered {response.status_code} for "
                                f"{what}: {text}")
        return response

    # ------------------------------------------------------------------ reading

    def manifest(self, reference: str) -> tuple[bytes, str, str]:
        """(raw bytes, media type, digest) of a tag or digest; an index is followed once."""
        for _ in range(2):
            response = self._check(self._send("GET", f"{self.base}/manifests/{reference}",
                                              headers={"Accept": MANIFEST_ACCEPT}),
                                   f"manifest {reference}")
            raw = response.content
            if len(raw) > artifact.MAX_MANIFEST_BYTES:
                raise RegistryError("manifest too large")
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            if reference.startswith("sha256:") and digest != reference:
                raise RegistryError(f"manifest {reference} hashes to {digest}")
            if media_type in artifact.INDEX_TYPES or artifact.is_index(raw):
                reference = artifact.pick_from_index(raw)
                continue
            return raw, media_type, digest
        raise RegistryError("image index points to another index")

    def blob_bytes(self, digest: str, limit: int = artifact.MAX_CONFIG_BYTES) -> bytes:
        """A small blob (a config), verified."""
        response = self._check(self._send("GET", f"{self.base}/blobs/{digest}", stream=True),
                               f"blob {digest}")
        data = b""
        for chunk in response.iter_content(1 << 16):
            data += chunk
            if len(data) > limit:
                response.close()
                raise RegistryError(f"blob {digest} is larger than {limit} bytes")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatch(f"blob {digest}: content does not match its digest")
        return data

    def open_blob(self, digest: str, offset: int = 0) -> tuple[requests.Response, int]:
        """Stream a blob from `offset`; returns (response, the offset it really starts at)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._check(self._send("GET", f"{self.base}/blobs/{digest}", stream=True,
                                          headers=headers), f"blob {digest}")
        if offset and response.status_code == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            return response, int(match.group(1)) if match else offset
        return response, 0

    def has_blob(self, digest: str) -> bool:
        response = self._send("HEAD", f"{self.base}/blobs/{digest}", push=True)
        response.close()
        if response.status_code == 404:
            return False
        self._check(response, f"blob {digest}")
        return True

    # ------------------------------------------------------------------ writing

    def upload_blob(self, digest: str, size: int, fileobj: BinaryIO,
                    on_bytes: Callable[[int], None] | None = None) -> None:
        """Monolithic upload: POST for an upload URL, then PUT the bytes with their digest."""
        response = self._check(self._send("POST", f"{self.base}/blobs/uploads/", push=True,
                                          headers={"Content-Length": "0"}),
                               "blob upload")
        location = response.headers.get("Location")
        response.close()
        if not location:
            raise RegistryError(f"registry {self.host} gave no upload location")
        url = urljoin(self.root + "/", location)
        url += ("&" if "?" in url else "?") + f"digest={digest}"
        body = _CountingReader(fileobj, size, on_bytes)
        response = self._check(self._send("PUT", url, push=True, data=body, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size)}),
            f"blob {digest}")
        response.close()

    def put_manifest(self, tag: str, raw: bytes, media_type: str) -> None:
        response = self._check(self._send("PUT", f"{self.base}/manifests/{tag}", push=True,
                                          data=raw, headers={"Content-Type": media_type}),
                               f"manifest {tag}")
        response.close()


class _CountingReader:
    """A file wrapper that reports bytes as requests reads them (upload progress)."""

    def __init__(self, fileobj: BinaryIO, size: int, on_bytes: Callable[[int], None] | None):
        self._f = fileobj
        self._start = fileobj.tell()
        self.len = size
        self._on_bytes = on_bytes
        self._sent = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n if n and n > 0 else 1 << 20)
        self._sent += len(data)
        if self._on_bytes:
            self._on_bytes(self._sent)
        return data

    def seek(self, *_args) -> None:
        self._f.seek(self._start)
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 20):
            yield chunk
