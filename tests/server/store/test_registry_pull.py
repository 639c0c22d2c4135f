"""Pulls and pushes against a real registry (docker-registry on loopback) and a fake Hub."""

from __future__ import annotations

import json

import pytest

from server.store import artifact
from server.store.errors import DigestMismatch, RegistryUnauthorized, RemoteNotFound
from server.store.progress import LayerProgress, Notice
from server.store.pull import prepare_pull
from server.store.push import prepare_push
from server.store.store import ModelStore
from tests.server.dmr_fixtures import FakeHub, Proxy, push_artifact, push_dmr_gguf, sha, tiny_gguf

BIG = 3 << 20  # big enough for several progress events and a mid-blob cut


@pytest.fixture
def store(tmp_path):
    return ModelStore(tmp_path / "models")


def _run(pull):
    return list(pull.events())


def test_pull_dmr_layout(registry, store):
    gguf = tiny_gguf(BIG // 4, seed=2)
    digest = push_dmr_gguf(registry.url, "store/dmr", "v1", gguf)
    events = _run(prepare_pull(store, f"{registry.host}/store/dmr:v1"))
    progress = [e for e in events if isinstance(e, LayerProgress)]
    assert progress and progress[-1].current == progress[-1].layer_size
    assert {e.total for e in progress} == {len(gguf) + len(b"Apache-2.0\n")}
    assert events[-1] == Notice("success", "Model pulled successfully")
    model = store.get(f"{registry.host}/store/dmr:v1")
    assert model.id == digest and model.gguf_path.read_bytes() == gguf
    again = _run(prepare_pull(store, f"{registry.host}/store/dmr:v1"))
    assert again == [Notice("success", f"Using cached model: {len(gguf) / (1 << 20):.2f} MiB")]
    by_digest = _run(prepare_pull(ModelStore(store.root.parent / "d"),
                                  f"{registry.host}/store/dmr@{digest}"))
    assert by_digest[-1].message == "Model pulled successfully"


def test_pull_modelpack_layout(registry, store):
    gguf = tiny_gguf(1000, seed=3)
    config = {"descriptor": {"createdAt": "2026-01-01T00:00:00Z"},
              "config": {"format": "gguf", "paramSize": "4K", "quantization": "F32"},
              "modelfs": {"type": "layers", "diffIds": [sha(gguf)]}}
    push_artifact(registry.url, "store/modelpack", "v1", config, artifact.MODELPACK_CONFIG,
                  [(artifact.MODELPACK_RAW, gguf, {artifact.FILEPATH_ANNOTATION: "m.gguf"})],
                  artifact_type=artifact.MODELPACK_ARTIFACT)
    _run(prepare_pull(store, f"{registry.host}/store/modelpack:v1"))
    model = store.get(f"{registry.host}/store/modelpack:v1")
    assert model.config["quantization"] == "F32" and model.config["architecture"] == "llama"


def test_missing_and_unsupported(registry, store):
    with pytest.raises(RemoteNotFound):
        prepare_pull(store, f"{registry.host}/store/nothing-here:v1")
    push_artifact(registry.url, "store/image", "v1", {"architecture": "amd64"},
                  "application/vnd.oci.image.config.v1+json",
                  [("application/vnd.oci.image.layer.v1.tar", b"layer", None)])
    from server.store.errors import UnsupportedMediaType

    with pytest.raises(UnsupportedMediaType):
        prepare_pull(store, f"{registry.host}/store/image:v1")


def test_interrupted_download_resumes_with_a_range_request(registry, store):
    gguf = tiny_gguf(BIG // 4, seed=4)
    push_dmr_gguf(registry.url, "store/cut", "v1", gguf)
    proxy = Proxy(registry.url, cut_after=BIG // 3)
    try:
        events = _run(prepare_pull(store, f"{proxy.host}/store/cut:v1"))
    finally:
        proxy.close()
    assert events[-1].message == "Model pulled successfully"
    ranges = [r for (_, path, r) in proxy.requests if sha(gguf) in path and r]
    assert ranges, proxy.requests
    assert int(ranges[0].split("=")[1].rstrip("-")) > 0
    assert store.get(f"{proxy.host}/store/cut:v1").gguf_path.read_bytes() == gguf


def test_partial_file_from_an_earlier_pull_is_continued(registry, store):
    gguf = tiny_gguf(BIG // 4, seed=5)
    push_dmr_gguf(registry.url, "store/seeded", "v1", gguf)
    partial = store.blob_path(sha(gguf)).with_name(sha(gguf)[7:] + ".incomplete")
    partial.write_bytes(gguf[:1_000_000])
    proxy = Proxy(registry.url)
    try:
        _run(prepare_pull(store, f"{proxy.host}/store/seeded:v1"))
    finally:
        proxy.close()
    assert [r for (_, p, r) in proxy.requests if sha(gguf) in p] == ["bytes=1000000-"]
    assert store.blob_path(sha(gguf)).read_bytes() == gguf and not partial.exists()


def test_tampered_blob_is_rejected_and_nothing_is_kept(registry, store):
    gguf = tiny_gguf(50_000, seed=6)
    push_dmr_gguf(registry.url, "store/tampered", "v1", gguf)
    blob = registry.blob_file(sha(gguf))
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    pull = prepare_pull(store, f"{registry.host}/store/tampered:v1")
    with pytest.raises(DigestMismatch):
        _run(pull)
    assert store.list() == []
    assert not store.has_blob(sha(gguf))
    assert not list((store.root / "blobs" / "sha256").glob("*.incomplete"))


def test_bearer_challenge_with_credentials_from_docker_config(registry, store, tmp_path,
                                                              monkeypatch):
    push_dmr_gguf(registry.url, "store/private", "v1", tiny_gguf(100, seed=7))
    proxy = Proxy(registry.url, auth="bearer")
    try:
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nocreds"))
        with pytest.raises(RegistryUnauthorized):
            prepare_pull(store, f"{proxy.host}/store/private:v1")
        (tmp_path / "docker").mkdir()
        import base64

        auth = base64.b64encode(f"{Proxy.USER}:{Proxy.PASSWORD}".encode()).decode()
        (tmp_path / "docker" / "config.json").write_text(
            json.dumps({"auths": {proxy.host: {"auth": auth}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
        _run(prepare_pull(store, f"{proxy.host}/store/private:v1"))
        assert store.find(f"{proxy.host}/store/private:v1") is not None
        token_request = proxy.token_requests[-1]
        assert token_request["service"] == "test-registry"
        assert token_request["scope"] == "repository:store/private:pull"
        # A bearer token given by the caller (DMR's `bearer-token`) is used as is.
        other = ModelStore(tmp_path / "other")
        _run(prepare_pull(other, f"{proxy.host}/store/private:v1", Proxy.TOKEN))
        with pytest.raises(RegistryUnauthorized):
            prepare_pull(other, f"{proxy.host}/store/private:v1", "wrong-token")
    finally:
        proxy.close()


def test_basic_auth_push_and_pull(registry, store, tmp_path, monkeypatch):
    import base64

    proxy = Proxy(registry.url, auth="basic")
    auth = base64.b64encode(f"{Proxy.USER}:{Proxy.PASSWORD}".encode()).decode()
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(
        json.dumps({"auths": {proxy.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(tiny_gguf(200_000, seed=8))
    try:
        model = store.add_gguf(gguf, [f"{proxy.host}/store/pushed:v2"])
        events = list(prepare_push(store, f"{proxy.host}/store/pushed:v2").events())
        assert events[-1] == Notice("success", "Model pushed successfully", "push")
        assert {e.mode for e in events if isinstance(e, LayerProgress)} == {"push"}
        other = ModelStore(tmp_path / "other")
        _run(prepare_pull(other, f"{proxy.host}/store/pushed:v2"))
        assert other.get(f"{proxy.host}/store/pushed:v2").id == model.id
        # Pushing again uploads nothing: the registry has every blob.
        before = len([r for r in proxy.requests if r[0] == "PUT"])
        list(prepare_push(store, f"{proxy.host}/store/pushed:v2").events())
        puts = [r for r in proxy.requests if r[0] == "PUT"][before:]
        assert len(puts) == 1 and "/manifests/" in puts[0][1]
    finally:
        proxy.close()


def test_hugging_face_pull(store, monkeypatch):
    q4 = tiny_gguf(70_000, seed=9)
    hub = FakeHub({"org/model-gguf": {"Model-Q8_0.gguf": tiny_gguf(10, seed=10),
                                      "Model-Q4_K_M.gguf": q4, "README.md": b"hi"}})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        events = _run(prepare_pull(store, "hf.co/Org/Model-GGUF"))
        assert events[-1].message == "Model pulled successfully"
        model = store.get("huggingface.co/org/model-gguf:latest")
        assert model.gguf_path.read_bytes() == q4
        assert store.find("hf.co/org/model-gguf") is not None
        assert _run(prepare_pull(store, "hf.co/org/model-gguf"))[0].message.startswith(
            "Using cached model")
        _run(prepare_pull(store, "hf.co/org/model-gguf:Q8_0"))
        assert store.find("hf.co/org/model-gguf:Q8_0") is not None
        with pytest.raises(RemoteNotFound):
            prepare_pull(store, "hf.co/org/absent")
        with pytest.raises(RemoteNotFound):
            prepare_pull(store, "hf.co/org/model-gguf:Q2_K")
    finally:
        hub.close()
