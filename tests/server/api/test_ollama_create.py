"""Ollama's /api/blobs, /api/create and /api/push with the official `ollama` client, against a
server with a store of its own and a real OCI registry on loopback."""

from __future__ import annotations

import hashlib
import json

import ollama
import pytest
import requests

from server.store.bundled import bundled_gguf
from tests.server.conftest import ensure_pulled
from tests.server.dmr_fixtures import tiny_gguf

JINJA = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture
def client(store_server, registry_model):
    ensure_pulled(store_server.url, registry_model)
    return ollama.Client(host=store_server.url)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_blobs_are_checked_by_digest(store_server):
    url = store_server.url
    data = tiny_gguf(seed=13)
    digest = _sha(data)
    assert requests.head(f"{url}/api/blobs/{digest}", timeout=10).status_code == 404
    wrong = requests.post(f"{url}/api/blobs/{_sha(b'other')}", data=data, timeout=30)
    assert wrong.status_code == 400 and "digest mismatch" in wrong.json()["error"]
    assert requests.head(f"{url}/api/blobs/{_sha(b'other')}", timeout=10).status_code == 404
    assert requests.post(f"{url}/api/blobs/{digest}", data=data, timeout=30).status_code == 201
    assert requests.head(f"{url}/api/blobs/{digest}", timeout=10).status_code == 200
    again = requests.post(f"{url}/api/blobs/{digest}", data=data, timeout=30)
    assert again.status_code == 201
    bad = requests.post(f"{url}/api/blobs/md5:abc", data=b"x", timeout=10)
    assert bad.status_code == 400 and "invalid digest" in bad.json()["error"]


def test_create_from_a_model_with_its_own_defaults(client, store_server, registry_model):
    base_url = f"{store_server.url}/models/{registry_model}"
    base_before = requests.get(base_url, timeout=10).json()["defaults"]
    statuses = [p.status for p in client.create(
        model="dmr-test/pirate", from_=registry_model, system="You are a pirate.",
        template=JINJA, license="MIT License, for the test",
        parameters={"temperature": 0.1, "num_predict": 24, "stop": ["\n\n"], "num_ctx": 1024},
        stream=True)]
    assert statuses[0] == "gathering model components" and statuses[-1] == "success"
    assert any(s.startswith("using existing layer sha256:") for s in statuses)
    assert any(s.startswith("creating new layer sha256:") for s in statuses)
    assert "writing manifest" in statuses
    shown = client.show("dmr-test/pirate")
    assert shown.template == JINJA and "MIT License" in (shown.license or "")
    lines = dict(line.split(None, 1) for line in shown.parameters.splitlines())
    assert lines["temperature"] == "0.1" and lines["num_predict"] == "24"
    assert lines["num_ctx"] == "1024" and json.loads(lines["stop"]) == "\n\n"
    raw = requests.post(store_server.url + "/api/show", json={"model": "dmr-test/pirate"},
                        timeout=10).json()
    assert raw["system"] == "You are a pirate."
    reply = client.chat(model="dmr-test/pirate", messages=[{"role": "user", "content": "Hi"}])
    assert reply.message.content and reply.eval_count <= 24
    # The new model's defaults are its own: the model it came from is untouched.
    assert requests.get(base_url, timeout=10).json()["defaults"] == base_before
    assert base_before["temperature"] == {"value": 0.2, "source": "card"}  # SmolLM2's card


def test_create_from_an_uploaded_gguf(client, store_server):
    digest = client.create_blob(bundled_gguf())  # already stored by the pull: accepted again
    assert client.create(model="dmr-test/uploaded", files={"model.gguf": digest},
                         system="Be brief.").status == "success"
    assert client.chat(model="dmr-test/uploaded", messages=[{"role": "user", "content": "Hi"}],
                       options={"num_predict": 8}).message.content
    by_digest = requests.post(store_server.url + "/api/create", timeout=60, json={
        "model": "dmr-test/by-digest", "from": digest, "stream": False})
    assert by_digest.json() == {"status": "success"}
    listed = {m.model for m in client.list().models}
    assert {"ai/dmr-test/uploaded:latest", "ai/dmr-test/by-digest:latest"} <= listed or \
        {"dmr-test/uploaded:latest", "dmr-test/by-digest:latest"} <= listed


@pytest.mark.parametrize("body,status,words", [
    ({"from": "MODEL", "quantize": "q4_K_M"}, 400, "does not quantize"),
    ({"from": "MODEL", "adapters": {"a.gguf": "sha256:" + "0" * 64}}, 400, "LoRA"),
    ({"from": "MODEL", "template": "{{ .System }} {{ .Prompt }}"}, 400, "Go"),
    ({"from": "MODEL", "template": "{% for %}"}, 400, "Jinja"),
    ({"from": "MODEL", "parameters": {"temprature": 1}}, 400, "temprature"),
    ({"from": "MODEL", "parameters": {"temperature": "hot"}}, 400, "temperature"),
    ({"from": "ai/absent"}, 404, "not found"),
    ({}, 400, "from"),
    ({"files": {"model.gguf": "sha256:" + "1" * 64}}, 400, "upload it first"),
    ({"files": {"model.safetensors": "sha256:" + "1" * 64}}, 400, "GGUF"),
])
def test_create_refuses_what_it_cannot_do(store_server, registry_model, body, status, words):
    ensure_pulled(store_server.url, registry_model)
    body = {k: (registry_model if v == "MODEL" else v) for k, v in body.items()}
    r = requests.post(store_server.url + "/api/create", timeout=30,
                      json={"model": "dmr-test/refused", "stream": False, **body})
    assert r.status_code == status and words in r.json()["error"], r.text
    assert requests.post(store_server.url + "/api/show", json={"model": "dmr-test/refused"},
                         timeout=10).status_code == 404


def test_create_refuses_a_blob_that_is_not_gguf(store_server):
    data = b"not a model at all" * 100
    digest = _sha(data)
    assert requests.post(f"{store_server.url}/api/blobs/{digest}", data=data,
                         timeout=10).status_code == 201
    r = requests.post(store_server.url + "/api/create", timeout=30, json={
        "model": "dmr-test/junk", "files": {"junk.gguf": digest}, "stream": False})
    assert r.status_code == 400 and "not a GGUF" in r.json()["error"]


def test_push_and_pull_back_keep_the_defaults(client, store_server, registry, registry_model):
    target = f"{registry.host}/dmr-test/shared:v1"
    client.create(model=target, from_=registry_model, system="Answer in French.",
                  parameters={"temperature": 0.3})
    progress = list(client.push(target, insecure=True, stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest",
                                                                       "success"]
    layers = [p for p in progress if p.status.startswith("pushing ") and p.digest]
    assert layers and all(p.total and p.completed <= p.total for p in layers)
    manifest = requests.get(f"{registry.url}/v2/dmr-test/shared/manifests/v1", timeout=10,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert manifest.status_code == 200
    client.delete(target)
    assert requests.post(store_server.url + "/api/show", json={"model": target},
                         timeout=10).status_code == 404
    assert client.pull(target, insecure=True).status == "success"
    shown = requests.post(store_server.url + "/api/show", json={"model": target},
                          timeout=10).json()
    assert shown["system"] == "Answer in French."
    assert "temperature                    0.3" in shown["parameters"]
    missing = requests.post(store_server.url + "/api/push", timeout=10,
                            json={"model": f"{registry.host}/dmr-test/absent:v1"})
    assert missing.status_code == 404
