"""Pulls that go wrong on the server's side: the server killed with SIGKILL mid-download, and
the disk filling up (a real tmpfs, mounted in a user and mount namespace of the server's own).

Each test runs its own `dmr serve` (without the bundled model) behind a slow loopback proxy to
the real registry, so it can act while the blob is still arriving.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from server.store.store import ModelStore
from tests.conftest import ServerProcess
from tests.server.dmr_fixtures import Proxy, push_dmr_gguf, sha, tiny_gguf

MiB = 1 << 20


def _serve(base: Path, models: Path, wrapper: list[str] | None = None) -> ServerProcess:
    config = base / "server.yaml"
    config.write_text("import_default_model: false\n")
    n = len(list(base.glob("server-*.log")))
    server = ServerProcess(models, base / f"server-{n}.log", "--config", str(config),
                           wrapper=wrapper)
    server.wait_ready()
    return server


def _pull_lines(url: str, ref: str):
    """POST /models/create and yield its progress objects as they arrive."""
    response = requests.post(f"{url}/models/create", json={"from": ref}, stream=True,
                             headers={"Accept": "application/json"}, timeout=120)
    assert response.status_code == 200, response.text
    for raw in response.iter_lines():
        if raw:
            yield json.loads(raw)


def _wait_for_bytes(lines, at_least: int) -> None:
    for line in lines:
        assert line["type"] == "progress", line
        if line["layer"]["current"] >= at_least:
            return
    raise AssertionError("the pull ended before the test could interrupt it")


def _listed(url: str, ref: str) -> bool:
    names = {t for m in requests.get(f"{url}/models").json() for t in m["tags"]}
    return ref in names or f"{ref}:latest" in names


def _blob_range_requests(proxy: Proxy, digest: str) -> list[str]:
    return [r for (_, path, r) in proxy.requests if digest in path and r]


def test_sigkill_mid_pull_leaves_no_model_and_the_next_pull_resumes(registry, tmp_path):
    gguf = tiny_gguf(3 * MiB, seed=11)  # 12 MiB
    push_dmr_gguf(registry.url, "faults/killed", "v1", gguf)
    proxy = Proxy(registry.url, delay=0.03)  # about 2 MiB/s
    models = tmp_path / "models"
    server = _serve(tmp_path, models)
    ref = f"{proxy.host}/faults/killed:v1"
    try:
        _wait_for_bytes(_pull_lines(server.url, ref), 2 * MiB)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        partial = models / "blobs" / "sha256" / (sha(gguf)[7:] + ".incomplete")
        assert partial.stat().st_size >= 2 * MiB
        assert ModelStore(models).find(ref) is None  # the index never saw it

        proxy.delay = 0
        server = _serve(tmp_path, models)
        assert not _listed(server.url, ref)
        assert requests.get(f"{server.url}/models/{ref}").status_code == 404
        assert ref not in requests.get(f"{server.url}/engines/v1/models").text
        lines = list(_pull_lines(server.url, ref))
        assert lines[-1]["type"] == "success", lines[-3:]
        resumed = _blob_range_requests(proxy, sha(gguf))
        assert resumed and int(resumed[-1].split("=")[1].rstrip("-")) >= 2 * MiB, resumed
        assert ModelStore(models).get(ref).gguf_path.read_bytes() == gguf
        assert not partial.exists() and _listed(server.url, ref)
    finally:
        server.stop()
        proxy.close()


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(
    not _can_mount_tmpfs(),
    reason="needs user and mount namespaces (`unshare -Urm`) to give the server a small disk")


def _small_disk(models: Path, size_mib: int) -> list[str]:
    """A wrapper that runs the server with `models` on a tmpfs of `size_mib` MiB."""
    models.mkdir(parents=True, exist_ok=True)
    mount = f'mount -t tmpfs -o size={size_mib}m tmpfs "$0" && exec "$@"'
    return ["unshare", "-Urm", "sh", "-c", mount, str(models)]


@needs_tmpfs
def test_a_model_bigger_than_the_free_space_is_refused_before_downloading(registry, tmp_path):
    gguf = tiny_gguf(5 * MiB, seed=12)  # 20 MiB on a 16 MiB disk
    push_dmr_gguf(registry.url, "faults/huge", "v1", gguf)
    models = tmp_path / "models"
    server = _serve(tmp_path, models, _small_disk(models, 16))
    ref = f"{registry.host}/faults/huge:v1"
    try:
        native = requests.post(f"{server.url}/models/create", json={"from": ref})
        assert native.status_code == 507, native.text
        assert native.headers["Content-Type"].startswith("text/plain")
        assert "not enough disk space" in native.text and "20.00 MiB more" in native.text
        ollama = requests.post(f"{server.url}/api/pull", json={"model": ref})
        assert ollama.status_code == 507 and "not enough disk space" in ollama.json()["error"]
        store = Path(f"/proc/{server.proc.pid}/root") / str(models).lstrip("/")
        assert not list((store / "blobs" / "sha256").glob("*.incomplete"))
    finally:
        server.stop()


@needs_tmpfs
def test_a_disk_that_fills_up_mid_pull_is_a_clear_error_and_the_pull_resumes(registry,
                                                                             tmp_path):
    gguf = tiny_gguf(3 * MiB, seed=13)  # 12 MiB on a 16 MiB disk
    push_dmr_gguf(registry.url, "faults/filled", "v1", gguf)
    proxy = Proxy(registry.url, delay=0.03)
    models = tmp_path / "models"
    server = _serve(tmp_path, models, _small_disk(models, 16))
    # The server's tmpfs, seen from outside its mount namespace.
    store = Path(f"/proc/{server.proc.pid}/root") / str(models).lstrip("/")
    ref = f"{proxy.host}/faults/filled:v1"
    try:
        lines = _pull_lines(server.url, ref)
        _wait_for_bytes(lines, 1 * MiB)
        filler = store / "someone-elses-file"
        with open(filler, "wb") as fh:  # another program takes the rest of the disk
            try:
                while True:
                    fh.write(b"\0" * MiB)
            except OSError:
                pass
        rest = list(lines)
        assert rest[-1]["type"] == "error", rest[-3:]
        assert "is full" in rest[-1]["message"] and "pull again" in rest[-1]["message"]
        assert not _listed(server.url, ref)
        assert requests.get(f"{server.url}/models/{ref}").status_code == 404
        assert requests.get(f"{server.url}/health").status_code == 200

        filler.unlink()
        proxy.delay = 0
        done = list(_pull_lines(server.url, ref))
        assert done[-1]["type"] == "success", done[-3:]
        assert _blob_range_requests(proxy, sha(gguf)), proxy.requests
        blob = store / "blobs" / "sha256" / sha(gguf)[7:]
        assert blob.read_bytes() == gguf and _listed(server.url, ref)
    finally:
        server.stop()
        proxy.close()
