"""Hugging Face as a model source: `hf.co/<org>/<repo>[:<quant>]` names a GGUF file in a repo.

Hugging Face serves files, not OCI artifacts, so (like DMR) we pick the GGUF file, download it
and build DMR's artifact around it locally. The tag chooses the file by quantization
(`:Q8_0`); `latest` prefers Q4_K_M, then the first GGUF file. A multimodal projector
(`*mmproj*.gguf`) comes along as the mmproj layer. `HF_ENDPOINT` points elsewhere (a mirror,
or a test server); `HF_TOKEN` or the request's bearer token authenticates.

The Hub's API is spoken by `huggingface_hub` (the file listing with its pagination, the
download URL). The download itself stays ours: `hf_hub_download` writes into the Hub's own
cache layout, while a pull streams each file into our content-addressed blob store, resumes a
broken transfer at its offset, checks the LFS hash and reports progress per layer.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import requests

from .errors import (
    RegistryError,
    RegistryUnauthorized,
    RegistryUnreachable,
    RemoteNotFound,
    UnsupportedMediaType,
)

DEFAULT_ENDPOINT = "https://huggingface.co"
PREFERRED_QUANT = "Q4_K_M"
TIMEOUT = (10, 60)
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class HFFile:
    path: str
    size: int
    sha256: str | None  # the LFS object id, when the file is stored in LFS

    @property
    def digest(self) -> str | None:
        return f"sha256:{self.sha256}" if self.sha256 else None


class HuggingFace:
    """One model repository on the Hub (or on `HF_ENDPOINT`)."""

    def __init__(self, repo_id: str, token: str | None = None, revision: str = "main",
                 session: requests.Session | None = None):
        self.repo_id = repo_id
        self.revision = revision
        self.base = endpoint()
        self._token = token or os.environ.get("HF_TOKEN")
        self._session = session or requests.Session()

    def _get(self, url: str, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self._session.get(url, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError as exc:
            raise RegistryUnreachable(f"cannot reach {self.base}: {exc}") from exc
        except requests.RequestException as exc:
            raise RegistryError(f"request to {self.base} failed: {exc}") from exc
        if response.status_code >= 400:
            response.close()
            self._raise_for(response.status_code, f" for {url}")
        return response

    def files(self) -> list[HFFile]:
        """Every file of the repository (huggingface_hub follows the tree API's pages)."""
        import httpx
        from huggingface_hub import HfApi  # imported on first use: 0.3 s, not at start
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
        from huggingface_hub.hf_api import RepoFile

        api = HfApi(endpoint=self.base, token=self._token or False)
        try:
            entries = list(api.list_repo_tree(self.repo_id, revision=self.revision,
                                              recursive=True))
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            self._raise_for(status, f": {exc.server_message or exc}")
            raise RegistryError(f"{self.base}: {exc}") from exc
        except (httpx.TransportError, OfflineModeIsEnabled) as exc:
            raise RegistryUnreachable(f"cannot reach {self.base}: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"{self.base} returned a file list we cannot read: "
                                f"{exc}") from exc
        out: list[HFFile] = []
        for entry in entries:
            if not isinstance(entry, RepoFile):
                continue
            sha = entry.lfs.sha256 if entry.lfs is not None else None
            sha = sha if isinstance(sha, str) and re.fullmatch(r"[a-f0-9]{64}", sha) else None
            size = entry.lfs.size if entry.lfs is not None else entry.size
            out.append(HFFile(entry.path, int(size or 0), sha))
        return out

    def _raise_for(self, status: int, detail: str) -> None:
        """Our error for a failed Hub answer (shared by the listing and the download)."""
        # The Hub answers 401 for repositories that do not exist (or are private).
        if status == 404 or (status == 401 and not self._token):
            raise RemoteNotFound(f"{self.repo_id} not found on {self.base}")
        if status in (401, 403):
            raise RegistryUnauthorized("Unauthorized")
        if status >= 400:
            raise RegistryError(f"{self.base} answered {status}{detail}")

    def open(self, path: str, offset: int = 0) -> tuple[requests.Response, int]:
        """Stream a file from `offset`; returns (response, the offset it really starts at)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        from huggingface_hub import hf_hub_url

        url = hf_hub_url(self.repo_id, path, revision=self.revision, endpoint=self.base)
        response = self._get(url, headers=headers, stream=True)
        return response, offset if offset and response.status_code == 206 else 0


def choose(files: list[HFFile], tag: str) -> tuple[HFFile, HFFile | None]:
    """(weights, mmproj or None) for a quantization tag; `latest` prefers Q4_K_M."""
    ggufs = sorted((f for f in files if f.path.lower().endswith(".gguf")), key=lambda f: f.path)
    projectors = [f for f in ggufs if "mmproj" in f.path.lower()]
    weights = [f for f in ggufs if f not in projectors]
    if not weights:
        raise UnsupportedMediaType("repository has no GGUF file: only GGUF models can run on "
                                   "the llama.cpp engine")
    wanted = PREFERRED_QUANT if tag == "latest" else tag
    pattern = re.compile(rf"(?<![A-Z0-9]){re.escape(wanted.upper())}(?![A-Z0-9_])")
    matches = [f for f in weights if pattern.search(f.path.upper())]
    if not matches:
        if tag != "latest":
            raise RemoteNotFound(f"no GGUF file for {tag!r} in the repository (files: "
                                 + ", ".join(f.path for f in weights[:10]) + ")")
        matches = weights
    chosen = matches[0]
    if _SHARD.search(chosen.path):
        raise UnsupportedMediaType(f"{chosen.path} is one shard of a split GGUF model; split "
                                   "models are not supported yet")
    return chosen, (projectors[0] if projectors else None)
