"""Test helpers for the model store: a real OCI registry (Debian's docker-registry), a loopback
proxy that can demand auth or cut a download, a fake Hugging Face, a tiny GGUF writer and a
raw OCI push that builds DMR's layout by hand (independent of the code under test)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

REGISTRY_BINARY = "docker-registry"
INSTALL_HINT = "apt-get update && apt-get install -y docker-registry"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------ the registry


class RegistryProcess:
    """docker-registry (distribution 2.8) on a free loopback port with its own storage."""

    def __init__(self, base: Path):
        binary = shutil.which(REGISTRY_BINARY) or "/usr/bin/docker-registry"
        if not Path(binary).exists():
            pytest.fail(f"{REGISTRY_BINARY} is not installed; the store tests need a real "
                        f"registry: {INSTALL_HINT}", pytrace=False)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.storage = base / "storage"
        config = base / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: test-secret\n")
        self._log = open(base / "registry.log", "wb")
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"docker-registry exited: {(base / 'registry.log').read_text()}")
            try:
                if requests.get(self.url + "/v2/", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        pytest.fail("docker-registry did not start within 30 s")

    def blob_file(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart
                / "data")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


# ------------------------------------------------------------------------ raw OCI push


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(base: str, repo: str, data: bytes) -> dict[str, Any]:
    digest = sha(data)
    if requests.head(f"{base}/v2/{repo}/blobs/{digest}").status_code != 200:
        start = requests.post(f"{base}/v2/{repo}/blobs/uploads/")
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        if location.startswith("/"):
            location = base + location
        sep = "&" if "?" in location else "?"
        done = requests.put(f"{location}{sep}digest={digest}", data=data,
                            headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
    return {"digest": digest, "size": len(data)}


def push_artifact(base: str, repo: str, tag: str, config: dict[str, Any], config_type: str,
                  layers: list[tuple[str, bytes, dict[str, str] | None]],
                  artifact_type: str | None = None) -> str:
    """Push config + layers + an OCI manifest with plain HTTP calls; returns its digest."""
    manifest: dict[str, Any] = {"schemaVersion": 2,
                                "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    if artifact_type:
        manifest["artifactType"] = artifact_type
    manifest["config"] = {"mediaType": config_type,
                          **_put_blob(base, repo, json.dumps(config).encode())}
    manifest["layers"] = []
    for media_type, data, notes in layers:
        layer = {"mediaType": media_type, **_put_blob(base, repo, data)}
        if notes:
            layer["annotations"] = notes
        manifest["layers"].append(layer)
    raw = json.dumps(manifest).encode()
    r = requests.put(f"{base}/v2/{repo}/manifests/{tag}", data=raw,
                     headers={"Content-Type": manifest["mediaType"]})
    assert r.status_code == 201, r.text
    return sha(raw)


def push_dmr_gguf(base: str, repo: str, tag: str, gguf: bytes,
                  context_size: int | None = None) -> str:
    """A GGUF laid out as DMR's `docker model package` lays it out."""
    config = {"config": {"format": "gguf", "quantization": "Q4_1", "parameters": "1 M",
                         "architecture": "llama", "size": f"{len(gguf) / (1 << 20):.2f} MiB",
                         **({"context_size": context_size} if context_size else {})},
              "descriptor": {"created": "2026-01-01T00:00:00Z"},
              "rootfs": {"type": "rootfs", "diff_ids": [sha(gguf)]}}
    return push_artifact(base, repo, tag, config,
                         "application/vnd.docker.ai.model.config.v0.1+json",
                         [("application/vnd.docker.ai.gguf.v3", gguf, None),
                          ("application/vnd.docker.ai.license", b"Apache-2.0\n", None)])


# ------------------------------------------------------------------------ a tiny GGUF


def tiny_gguf(n_values: int = 4096, seed: int = 1) -> bytes:
    """A valid GGUF v3 with a few metadata keys and one f32 tensor (not runnable)."""
    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data

    kv = [("general.architecture", 8, string("llama")),
          ("general.file_type", 4, struct.pack("<I", 2)),
          ("llama.context_length", 4, struct.pack("<I", 512))]
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv))
    for key, vtype, value in kv:
        out += string(key) + struct.pack("<I", vtype) + value
    out += string("token_embd.weight") + struct.pack("<I", 1) + struct.pack("<Q", n_values)
    out += struct.pack("<IQ", 0, 0)  # f32, offset 0
    out += b"\0" * (-len(out) % 32)
    payload = bytes((i * 31 + seed) % 251 for i in range(n_values * 4))
    return out + payload


# ------------------------------------------------------------------------ loopback proxy


class Proxy:
    """Forwards to a registry; can demand Basic or Bearer auth, cut one blob download, or
    send blobs slowly (`delay` seconds per 64 KiB), so a test can act in the middle of a pull.

    `requests` records (method, path, range header) of everything forwarded.
    """

    USER, PASSWORD, TOKEN = "alice", "s3cret", "tok-123"

    def __init__(self, upstream: str, *, auth: str | None = None, cut_after: int | None = None,
                 delay: float = 0.0):
        self.upstream = upstream
        self.auth = auth
        self.cut_after = cut_after
        self.delay = delay
        self.requests: list[tuple[str, str, str | None]] = []
        self.token_requests: list[dict[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                proxy._handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _authorized(self, handler) -> bool:
        header = handler.headers.get("Authorization", "")
        if self.auth == "basic":
            expected = base64.b64encode(f"{self.USER}:{self.PASSWORD}".encode()).decode()
            return header == f"Basic {expected}"
        if self.auth == "bearer":
            return header == f"Bearer {self.TOKEN}"
        return True

    def _token(self, handler) -> None:
        from urllib.parse import parse_qs, urlsplit

        query = {k: v[0] for k, v in parse_qs(urlsplit(handler.path).query).items()}
        query["authorization"] = handler.headers.get("Authorization", "")
        self.token_requests.append(query)
        expected = base64.b64encode(f"{self.USER}:{self.PASSWORD}".encode()).decode()
        if query["authorization"] != f"Basic {expected}":
            self._reply(handler, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return
        self._reply(handler, 200, json.dumps({"token": self.TOKEN}).encode())

    def _reply(self, handler, status: int, body: bytes, headers: dict[str, str] | None = None):
        handler.send_response(status)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def _handle(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if handler.path.startswith("/token"):
            self._token(handler)
            return
        if not self._authorized(handler):
            challenge = ('Basic realm="test"' if self.auth == "basic" else
                         f'Bearer realm="{self.url}/token",service="test-registry"')
            self._reply(handler, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                        {"WWW-Authenticate": challenge})
            return
        self.requests.append((handler.command, handler.path, handler.headers.get("Range")))
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in ("host", "authorization", "content-length", "connection")}
        headers["Host"] = self.host
        upstream = requests.request(handler.command, self.upstream + handler.path, data=body,
                                    headers=headers, stream=True, allow_redirects=False)
        handler.send_response(upstream.status_code)
        for k, v in upstream.headers.items():
            if k.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                handler.send_header(k, v)
        handler.end_headers()
        if handler.command == "HEAD":
            upstream.close()
            return
        cut = (self.cut_after is not None and handler.command == "GET"
               and "/blobs/" in handler.path and not handler.headers.get("Range")
               and int(upstream.headers.get("Content-Length") or 0) > self.cut_after)
        sent = 0
        for chunk in upstream.raw.stream(65536, decode_content=False):
            if cut and sent + len(chunk) > self.cut_after:
                handler.wfile.write(chunk[: self.cut_after - sent])
                handler.wfile.flush()
                self.cut_after = None  # only once
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            try:
                handler.wfile.write(chunk)
            except OSError:  # the puller went away (a test killed it)
                return
            sent += len(chunk)
            if self.delay and "/blobs/" in handler.path:
                time.sleep(self.delay)


# ------------------------------------------------------------------------ fake Hugging Face


class FakeHub:
    """Serves `/api/models/<repo>/tree/main` and `/<repo>/resolve/main/<file>` (with ranges)."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[tuple[str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                hub._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _send(self, handler, status: int, body: bytes, headers: dict[str, str] | None = None):
        handler.send_response(status)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _handle(self, handler) -> None:
        path = handler.path.split("?", 1)[0]
        self.requests.append((path, handler.headers.get("Range")))
        if path.startswith("/api/models/") and "/tree/main" in path:
            repo = path[len("/api/models/"):path.index("/tree/main")]
            files = self.repos.get(repo)
            if files is None:
                self._send(handler, 401, b'{"error":"Repository not found"}')
                return
            # As the Hub lists files: a git blob id, and LFS details (huggingface_hub needs both).
            listing = [{"type": "file", "path": name, "size": len(data),
                        "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                        "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                "pointerSize": 134}}
                       for name, data in files.items()]
            self._send(handler, 200, json.dumps(listing).encode(),
                       {"Content-Type": "application/json"})
            return
        if "/resolve/main/" in path:
            repo, name = path[1:].split("/resolve/main/", 1)
            data = self.repos.get(repo, {}).get(name)
            if data is None:
                self._send(handler, 404, b"not found")
                return
            start = 0
            if handler.headers.get("Range", "").startswith("bytes="):
                start = int(handler.headers["Range"][6:].split("-")[0])
                self._send(handler, 206, data[start:],
                           {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
                return
            self._send(handler, 200, data)
            return
        self._send(handler, 404, b"not found")
