"""DMR's model routes end to end: a GGUF pushed to a real registry in DMR's layout is pulled
through /models/create, served, tagged, pushed back and deleted."""

from __future__ import annotations

import json

import pytest
import requests

from server.store import tarball
from server.store.package import package_gguf
from tests.server.conftest import ensure_pulled
from tests.server.dmr_fixtures import push_artifact, tiny_gguf

JSON = {"Accept": "application/json"}


def _create(url: str, ref: str, **extra) -> requests.Response:
    return requests.post(f"{url}/models/create", json={"from": ref, **extra}, headers=JSON)


def _lines(response: requests.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_pull_streams_progress_then_serves_the_model(store_server, registry_model):
    url = store_server.url
    # Start from an empty store (other modules may have pulled it): this pull must transfer.
    assert requests.delete(f"{url}/models/purge").status_code == 200
    assert requests.get(f"{url}/models").json() == []
    assert requests.get(f"{url}/models/{registry_model}").status_code == 404
    r = _create(url, registry_model)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    lines = _lines(r)
    progress = [m for m in lines if m["type"] == "progress"]
    assert len(progress) > 5, lines[:3]
    first = progress[0]
    assert set(first) == {"type", "message", "total", "layer", "mode"} and first["mode"] == "pull"
    assert first["message"].startswith("Downloaded: ") and first["message"].endswith(" MB")
    assert first["layer"]["id"].startswith("sha256:") and first["layer"]["size"] > 90_000_000
    assert progress[-1]["layer"]["current"] == progress[-1]["layer"]["size"]
    assert lines[-1] == {"type": "success", "message": "Model pulled successfully", "total": 0,
                         "layer": {"size": 0, "current": 0}, "mode": "pull"}

    listed = requests.get(f"{url}/models/{registry_model}").json()
    assert listed["tags"] == [registry_model] and listed["config"]["quantization"] == "Q4_1"
    chat = requests.post(f"{url}/engines/v1/chat/completions", json={
        "model": registry_model, "max_tokens": 12, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hello."}]})
    assert chat.status_code == 200, chat.text
    message = chat.json()["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"].strip()
    ids = [m["id"] for m in requests.get(f"{url}/engines/v1/models").json()["data"]]
    assert registry_model in ids


def test_second_pull_uses_the_cache(store_server, registry_model):
    ensure_pulled(store_server.url, registry_model)
    lines = _lines(_create(store_server.url, registry_model))
    assert [m["type"] for m in lines] == ["success"]
    assert lines[0]["message"] == "Using cached model: 93.81 MiB"


def test_progress_is_html_escaped_text_without_accept_json(store_server, registry_model):
    ensure_pulled(store_server.url, registry_model)
    r = requests.post(f"{store_server.url}/models/create", json={"from": registry_model})
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.text.startswith("{&#34;type&#34;:&#34;success&#34;")


def test_errors_come_before_the_stream_as_plain_text(store_server, registry):
    url = store_server.url
    missing = _create(url, f"{registry.host}/test/absent:v1")
    assert missing.status_code == 404 and missing.text.startswith("Model not found")
    assert missing.headers["Content-Type"].startswith("text/plain")
    bad = _create(url, "ai/../../etc:x")
    assert bad.status_code == 400 and bad.text.startswith("Invalid model reference")
    assert requests.post(f"{url}/models/create", data="{nope").status_code == 400
    assert requests.post(f"{url}/models/create", json={"form": "x"}).status_code == 400
    push_artifact(registry.url, "test/not-a-model", "v1", {"architecture": "amd64"},
                  "application/vnd.oci.image.config.v1+json",
                  [("application/vnd.oci.image.layer.v1.tar", b"data", None)])
    unsupported = _create(url, f"{registry.host}/test/not-a-model:v1")
    assert unsupported.status_code == 422 and "not a model" in unsupported.text


def test_tag_push_and_delete(store_server, registry, registry_model):
    url = store_server.url
    ensure_pulled(url, registry_model)
    model = requests.get(f"{url}/models/{registry_model}").json()
    target = f"{registry.host}/test/pushed"
    r = requests.post(f"{url}/models/{registry_model}/tag", params={"repo": target, "tag": "v2"})
    assert r.status_code == 201
    assert r.json() == {"message": f'Model tagged successfully with "{target}:v2"',
                        "target": f"{target}:v2"}
    assert requests.post(f"{url}/models/{registry_model}/tag",
                         params={"repo": target}).status_code == 400
    assert requests.post(f"{url}/models/{registry_model}/tag",
                         params={"repo": "../x", "tag": "v"}).status_code == 400
    assert requests.post(f"{url}/models/ai/absent/tag",
                         params={"repo": "a/b", "tag": "c"}).status_code == 404

    pushed = requests.post(f"{url}/models/{target}:v2/push", headers=JSON)
    lines = _lines(pushed)
    assert lines[-1]["type"] == "success" and lines[-1]["message"] == "Model pushed successfully"
    assert {m["mode"] for m in lines} == {"push"}
    manifest = requests.get(f"{registry.url}/v2/test/pushed/manifests/v2",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert manifest.status_code == 200
    assert manifest.headers["Docker-Content-Digest"] == model["id"]

    conflict = requests.delete(f"{url}/models/{model['id']}")
    assert conflict.status_code == 409 and "must be forced" in conflict.text
    untag = requests.delete(f"{url}/models/{target}:v2")
    assert untag.status_code == 200 and untag.json() == [{"Untagged": f"{target}:v2"}]
    assert requests.get(f"{url}/models/{registry_model}").status_code == 200


def test_deleting_a_loaded_model_unloads_it_first(store_server, registry, registry_model):
    url = store_server.url
    ensure_pulled(url, registry_model)
    copy = f"{registry.host}/test/copy:v1"
    requests.post(f"{url}/models/{registry_model}/tag",
                  params={"repo": f"{registry.host}/test/copy", "tag": "v1"})
    chat = requests.post(f"{url}/engines/v1/chat/completions", json={
        "model": copy, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})
    assert chat.status_code == 200
    assert any(p["model_name"] == registry_model for p in
               requests.get(f"{url}/engines/ps").json())
    model_id = requests.get(f"{url}/models/{copy}").json()["id"]
    r = requests.delete(f"{url}/models/{model_id}", params={"force": "true"})
    assert r.status_code == 200 and r.json()[-1] == {"Deleted": model_id}
    assert requests.get(f"{url}/engines/ps").json() == []
    assert requests.get(f"{url}/models/{registry_model}").status_code == 404
    assert requests.delete(f"{url}/models/{copy}").status_code == 404


def test_load_archive_then_tag(store_server, tmp_path):
    url = store_server.url
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(tiny_gguf(5000, seed=11))
    built = package_gguf(gguf, context_size=128)
    r = requests.post(f"{url}/models/load", data=tarball.write(built.blobs, built.manifest),
                      headers=JSON)
    assert r.status_code == 200 and _lines(r)[-1]["type"] == "success"
    assert requests.get(f"{url}/models/{built.model_id}").json()["config"]["context_size"] == 128
    tagged = requests.post(f"{url}/models/{built.model_id}/tag",
                           params={"repo": "ai/tiny-loaded", "tag": "v1"})
    assert tagged.status_code == 201
    assert requests.delete(f"{url}/models/ai/tiny-loaded:v1").json()[-1] == {
        "Deleted": built.model_id}
    garbage = requests.post(f"{url}/models/load", data=b"not a tar" * 100)
    assert garbage.status_code == 400


@pytest.mark.parametrize("path", [
    "/models/..%2F..%2Fetc%2Fpasswd", "/models/ai/..%2f..%2fx", "/models/%2Fetc%2Fpasswd",
    "/models/ai/x@sha256:..%2F..%2Fetc", "/models/ai/x:..", "/models/sha256:..%2f..",
    "/models/ai%2F..%2F..%2Fmodels.json", "/models/ai/x%00y",
])
def test_traversal_attempts_are_refused(store_server, path):
    url = store_server.url
    for method in ("GET", "DELETE"):
        r = requests.request(method, url + path)
        assert r.status_code in (400, 404), (method, path, r.status_code, r.text)
    r = requests.post(url + path + "/tag", params={"repo": "ai/y", "tag": "v"})
    assert r.status_code in (400, 404)
    r = requests.post(url + path + "/push")
    assert r.status_code in (400, 404)
    assert (store_server.models_dir / "models.json").is_file()
