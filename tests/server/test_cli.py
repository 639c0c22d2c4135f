"""The `dmr` client commands against a running server and a real registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import requests

from server.store.bundled import bundled_gguf
from tests.server.conftest import ensure_pulled


def dmr(url: str, *args: str, stdin: str | None = None, timeout: float = 300):
    env = {**os.environ, "MODEL_RUNNER_HOST": url}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=timeout)


def ok(url: str, *args: str, **kwargs) -> str:
    result = dmr(url, *args, **kwargs)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def test_status_version_and_failures(store_server):
    url = store_server.url
    assert "Docker Model Runner is running" in ok(url, "status")
    assert json.loads(ok(url, "status", "--json"))["engines"]["llama.cpp"].startswith("Running")
    version = json.loads(ok(url, "version", "--json"))
    assert version["client"] == version["server"]
    down = dmr("http://127.0.0.1:9", "ls")
    assert down.returncode == 1 and "cannot reach the model runner" in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1
    missing = dmr(url, "inspect", "ai/absent")
    assert missing.returncode == 1 and missing.stderr.startswith("dmr: model not found")


def test_package_push_remove_pull_run(store_server, registry):
    url = store_server.url
    ref = f"{registry.host}/cli/packaged:v1"
    out = ok(url, "package", "--gguf", str(bundled_gguf()), "--context-size", "1024", "--push",
             ref)
    assert f"pushed as {ref}" in out
    assert requests.get(f"{registry.url}/v2/cli/packaged/manifests/v1", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code == 200
    removed = ok(url, "rm", ref)
    assert "Untagged: " + ref in removed and "Deleted: sha256:" in removed
    assert "Model pulled successfully" in ok(url, "pull", ref)
    assert "Using cached model" in ok(url, "pull", ref)
    info = json.loads(ok(url, "inspect", ref))
    assert info["config"]["context_size"] == 1024 and info["tags"] == [ref]
    listing = ok(url, "ls")
    assert listing.startswith("MODEL NAME") and ref in listing and "1024" in listing
    assert any(ref in m["tags"] for m in json.loads(ok(url, "ls", "--json")))

    answer = ok(url, "run", "--max-tokens", "16", ref, "Say", "hello")
    assert answer.strip()
    chat = ok(url, "run", "--max-tokens", "16", ref,
              stdin="Hello!\nAnd again?\n/bye\nnot sent\n")
    assert len(chat.strip().splitlines()) >= 2
    [running] = [r for r in json.loads(ok(url, "ps", "--json")) if r["model_name"] == ref]
    assert running["context_size"] == 1024
    assert ref in ok(url, "ps")
    assert "Unloaded" in ok(url, "unload", "--all")
    assert json.loads(ok(url, "ps", "--json")) == []
    assert json.loads(ok(url, "df", "--json"))["models_disk_usage"] > 0


def test_tag_configure_rm(store_server, registry, registry_model):
    url = store_server.url
    ensure_pulled(url, registry_model)
    alias = f"{registry.host}/cli/alias:v3"
    assert "tagged successfully" in ok(url, "tag", registry_model, alias)
    assert "Configured" in ok(url, "configure", "--context-size", "768", alias)
    [shown] = json.loads(ok(url, "configure", "show", alias))
    assert shown["Config"]["context-size"] == 768
    bad = dmr(url, "configure", alias, "--", "--flash-attn")
    assert bad.returncode == 1 and "not supported" in bad.stderr
    assert ok(url, "configure", "--context-size", "-1", alias)
    model_id = json.loads(ok(url, "inspect", alias))["id"]
    conflict = dmr(url, "rm", model_id)
    assert conflict.returncode == 1 and "must be forced" in conflict.stderr
    assert f"Untagged: {alias}" in ok(url, "rm", alias)


def test_pull_a_local_gguf_file(store_server, tmp_path):
    url = store_server.url
    copy = tmp_path / "My_Model-Q4.gguf"
    copy.write_bytes(bundled_gguf().read_bytes())
    out = ok(url, "pull", str(copy))
    assert "ai/my_model-q4:latest" in out
    assert "ai/my_model-q4:latest" in ok(url, "ls", "my_model")
    absent = dmr(url, "pull", str(tmp_path / "absent.gguf"))
    assert absent.returncode == 1 and "no such file" in absent.stderr
    assert "Deleted" in ok(url, "rm", "ai/my_model-q4")


def test_purge(store_server):
    url = store_server.url
    refused = dmr(url, "purge")
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert "purged" in ok(url, "purge", "--force")
    assert json.loads(ok(url, "ls", "--json")) == []
    assert requests.get(f"{url}/engines/_configure").json() == []
