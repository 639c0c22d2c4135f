"""The store on its own: blobs, resumable writes, manifests, tags, archives, configs."""

from __future__ import annotations

import json
import os
import time

import pytest

from server.core.errors import Conflict, InvalidRequest, ModelNotFound
from server.store import artifact, huggingface, tarball
from server.store.blobfile import remove_stale_partials
from server.store.errors import DigestMismatch, RemoteNotFound, UnsupportedMediaType
from server.store.package import package_gguf
from server.store.registry import is_loopback, parse_challenge
from server.store.runner_config import (
    RunnerConfig,
    RunnerConfigs,
    parse_flags,
    parse_runtime_flags,
)
from server.store.store import ModelStore
from tests.server.dmr_fixtures import sha, tiny_gguf


@pytest.fixture
def store(tmp_path):
    return ModelStore(tmp_path / "models")


@pytest.fixture
def gguf_file(tmp_path):
    path = tmp_path / "tiny.gguf"
    path.write_bytes(tiny_gguf())
    return path


# ------------------------------------------------------------------------ blobs


def test_partial_blob_resumes_and_verifies(store):
    data = os.urandom(300_000)
    digest = sha(data)
    with store.partial_blob(digest, len(data)) as blob:
        blob.write(data[:100_000])  # interrupted here
    assert not store.has_blob(digest)
    assert store.blob_path(digest).with_name(digest[7:] + ".incomplete").stat().st_size == 100_000
    with store.partial_blob(digest, len(data)) as blob:
        assert blob.offset == 100_000 and not blob.done
        blob.write(data[100_000:])
        blob.commit()
    assert store.blob_path(digest).read_bytes() == data
    assert not list(store.blob_path(digest).parent.glob("*.incomplete"))
    with store.partial_blob(digest, len(data)) as blob:
        assert blob.done


def test_tampered_blob_is_discarded(store):
    data = b"x" * 5000
    digest = sha(data)
    with store.partial_blob(digest, len(data)) as blob:
        blob.write(b"y" * 5000)
        with pytest.raises(DigestMismatch):
            blob.commit()
    assert not store.has_blob(digest)
    assert not list(store.blob_path(digest).parent.glob("*.incomplete"))


def test_stale_partials_are_cleaned(store):
    stale = store.root / "blobs" / "sha256" / ("a" * 64 + ".incomplete")
    stale.write_bytes(b"old")
    os.utime(stale, (time.time() - 8 * 86400,) * 2)
    assert remove_stale_partials(stale.parent) == 1 and not stale.exists()


def test_blob_paths_refuse_anything_but_a_digest(store):
    for bad in ["sha256:../../etc/passwd", "sha256:" + "A" * 64, "md5:" + "a" * 64, "../x"]:
        with pytest.raises(InvalidRequest):
            store.blob_path(bad)


# ------------------------------------------------------------------------ models and tags


def test_add_tag_find_and_delete_semantics(store, gguf_file):
    model = store.add_gguf(gguf_file, ["ai/tiny:v1"], context_size=256)
    assert model.config["context_size"] == 256 and model.config["architecture"] == "llama"
    assert store.get("ai/tiny:v1").id == store.get(model.id[7:19]).id == model.id
    store.tag("ai/tiny:v1", "registry.example:5000/team/tiny:prod")
    assert set(store.get(model.id).tags) == {"ai/tiny:v1", "registry.example:5000/team/tiny:prod"}
    with pytest.raises(Conflict):  # by ID while several tags point at it
        store.remove(model.id)
    assert store.remove("ai/tiny:v1") == [{"Untagged": "ai/tiny:v1"}]
    result = store.remove("registry.example:5000/team/tiny:prod")
    assert result[-1] == {"Deleted": model.id}
    assert not any(store.has_blob(d) for d in model.files)
    with pytest.raises(ModelNotFound):
        store.get("ai/tiny:v1")


def test_force_delete_and_purge(store, gguf_file):
    model = store.add_gguf(gguf_file, ["ai/a", "ai/b"])
    assert store.remove(model.id, force=True)[-1] == {"Deleted": model.id}
    store.add_gguf(gguf_file, ["ai/c"])
    assert store.purge() == 1 and store.list() == []
    assert not any((store.root / "blobs" / "sha256").iterdir())


def test_archive_round_trip_keeps_the_model_id(tmp_path, gguf_file):
    license_file = tmp_path / "LICENSE"
    license_file.write_text("MIT\n")
    built = package_gguf(gguf_file, context_size=1024, license_paths=[license_file])
    archive = tarball.write_bytes(built.blobs, built.manifest)
    store = ModelStore(tmp_path / "other")
    import io

    model = tarball.load(store, io.BytesIO(archive))
    assert model.id == built.model_id and model.tags == []
    assert model.config["context_size"] == 1024
    manifest = store.manifest(model.id)
    assert [layer.media_type for layer in manifest.layers] == [artifact.DMR_GGUF,
                                                                artifact.DMR_LICENSE]


def test_archive_with_a_lying_blob_name_is_refused(tmp_path, gguf_file):
    import io

    built = package_gguf(gguf_file)
    digest, _ = built.blobs[0]
    bad = tarball.write_bytes([(digest, b"not the weights")] + built.blobs[1:], built.manifest)
    store = ModelStore(tmp_path / "other")
    with pytest.raises(DigestMismatch):
        tarball.load(store, io.BytesIO(bad))
    assert store.list() == []


def test_manifest_checks(store):
    good_digest = "sha256:" + "a" * 64
    layer = {"mediaType": artifact.DMR_GGUF, "digest": good_digest, "size": 1}
    config = {"mediaType": artifact.DMR_CONFIG, "digest": good_digest, "size": 1}
    raw = json.dumps({"schemaVersion": 2, "config": config, "layers": [layer]}).encode()
    assert artifact.parse_manifest(raw).weights().digest == good_digest
    image = {**config, "mediaType": "application/vnd.oci.image.config.v1+json"}
    with pytest.raises(UnsupportedMediaType):
        artifact.parse_manifest(json.dumps({"config": image, "layers": [layer]}).encode())
    no_gguf = {**layer, "mediaType": artifact.DMR_LICENSE}
    with pytest.raises(UnsupportedMediaType):
        artifact.parse_manifest(json.dumps({"config": config, "layers": [no_gguf]}).encode())
    evil = {**layer, "digest": "sha256:../../../../etc/passwd"}
    with pytest.raises(InvalidRequest):
        artifact.parse_manifest(json.dumps({"config": config, "layers": [evil]}).encode())


def test_modelpack_manifest_is_described_from_the_gguf(store):
    gguf = tiny_gguf()
    weights, _ = store.write_blob(gguf)
    config = json.dumps({"descriptor": {"createdAt": "2026-01-01T00:00:00Z"},
                         "config": {"format": "gguf", "paramSize": "16K"},
                         "modelfs": {"type": "layers", "diffIds": [weights]}}).encode()
    config_digest, config_size = store.write_blob(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": artifact.OCI_MANIFEST,
        "artifactType": artifact.MODELPACK_ARTIFACT,
        "config": {"mediaType": artifact.MODELPACK_CONFIG, "digest": config_digest,
                   "size": config_size},
        "layers": [{"mediaType": artifact.MODELPACK_RAW, "digest": weights, "size": len(gguf),
                    "annotations": {artifact.FILEPATH_ANNOTATION: "model.gguf"}}],
    }).encode()
    model = store.add_manifest(manifest, ["ai/packed"])
    assert model.gguf_path == store.blob_path(weights)
    assert model.config["parameters"] == "16K" and model.config["architecture"] == "llama"


# ------------------------------------------------------------------------ sources


def test_hf_file_choice():
    f = huggingface.HFFile
    files = [f("Model-Q8_0.gguf", 1, None), f("Model-Q4_K_M.gguf", 1, None),
             f("Model-Q4_K_S.gguf", 1, None), f("mmproj-F16.gguf", 1, None),
             f("README.md", 1, None)]
    weights, mmproj = huggingface.choose(files, "latest")
    assert weights.path == "Model-Q4_K_M.gguf" and mmproj.path == "mmproj-F16.gguf"
    assert huggingface.choose(files, "Q8_0")[0].path == "Model-Q8_0.gguf"
    assert huggingface.choose(files, "q4_k_s")[0].path == "Model-Q4_K_S.gguf"
    with pytest.raises(RemoteNotFound):
        huggingface.choose(files, "Q4_K")  # a prefix of two quants is not a match
    assert huggingface.choose([f("a-Q2_K.gguf", 1, None), f("b-Q3_K.gguf", 1, None)],
                              "latest")[0].path == "a-Q2_K.gguf"
    with pytest.raises(UnsupportedMediaType):
        huggingface.choose([f("m-Q4_K_M-00001-of-00002.gguf", 1, None)], "latest")
    with pytest.raises(UnsupportedMediaType):
        huggingface.choose([f("model.safetensors", 1, None)], "latest")


def test_registry_helpers():
    assert parse_challenge('Bearer realm="https://auth.example/token",service="reg",'
                           'scope="repository:a/b:pull"') == (
        "bearer", {"realm": "https://auth.example/token", "service": "reg",
                   "scope": "repository:a/b:pull"})
    assert parse_challenge('Basic realm="x"')[0] == "basic"
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("registry.example:5000") and not is_loopback("10.0.0.1")


# ------------------------------------------------------------------------ runner configs


def test_runtime_flag_allowlist():
    assert parse_flags(["--ctx-size", "2048", "-np=2", "--threads", "1"]) == {
        "context_size": 2048, "parallel": 2, "threads": 1}
    parsed = parse_runtime_flags(["--temp", "0.7", "--top-k=1", "--mlock", "--no-mmap", "-ngl",
                                  "20", "--split-mode", "row", "--reasoning-budget", "-1",
                                  "--no-prefill-assistant", "-n", "-1", "-tb", "2"])
    assert parsed.default == {"temperature": 0.7, "top_k": 1}  # -n -1: no cap, as without
    assert parsed.engine == {"mlock": True, "mmap": False, "threads_batch": 2}
    assert parsed.gpu == {"n_gpu_layers": 20, "split_mode": "row"}
    assert parsed.config == {"reasoning_budget": -1, "prefill_assistant": False}
    for bad in (["--model", "/etc/passwd"], ["--flash-attn"], ["-c", "-5"], ["-c"],
                ["--ctx-size=../x"], ["-np", "0"], ["--temp", "hot"], ["--temp", "9"],
                ["--mlock=1"], ["--split-mode", "diagonal"], ["--top-p", "nan"]):
        with pytest.raises(InvalidRequest):
            parse_flags(bad)


def test_runner_config_flags_become_defaults_and_settings():
    config = RunnerConfig(runtime_flags=["--temp", "0", "--reasoning-budget", "0",
                                         "--no-prefill-assistant"], reasoning_budget=512)
    assert config.model_defaults().temperature == 0
    assert config.reasoning() == 0 and config.prefill_assistant is False
    assert RunnerConfig(reasoning_budget=512).reasoning() == 512
    assert "temperature" not in config.load_options()


def test_runner_configs_persist(tmp_path):
    configs = RunnerConfigs(tmp_path)
    configs.put("sha256:" + "b" * 64, RunnerConfig(context_size=2048, keep_alive=600,
                                                   runtime_flags=["-np", "2"]))
    again = RunnerConfigs(tmp_path).get("sha256:" + "b" * 64)
    assert again.load_options() == {"context_size": 2048, "parallel": 2}
    assert again.to_dmr() == {"context-size": 2048, "runtime-flags": ["-np", "2"],
                              "keep_alive": "10m0s"}


def test_offline_pull_of_a_local_model_uses_the_local_copy(store, gguf_file):
    from server.store.errors import RegistryUnreachable
    from server.store.pull import prepare_pull

    store.add_gguf(gguf_file, ["127.0.0.1:9/team/local:v1"])
    events = list(prepare_pull(store, "127.0.0.1:9/team/local:v1").events())
    assert [e.kind for e in events] == ["warning", "success"]
    assert events[1].message.startswith("Using cached model")
    with pytest.raises(RegistryUnreachable):
        prepare_pull(store, "127.0.0.1:9/team/other:v1")


def test_default_model_has_the_same_id_in_every_store(tmp_path):
    from server.store.bundled import ensure_default_model
    from server.store.store import ModelStore

    first = ensure_default_model(ModelStore(tmp_path / "a"))
    second = ensure_default_model(ModelStore(tmp_path / "b"))
    assert first.id == second.id and set(first.tags) == set(second.tags)
