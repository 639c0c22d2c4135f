"""Model management (core/management.py) through every dialect, in process on the fake engine:
the same decisions whichever route asks (delete, purge, pull's two-pull limit, configure,
unload when idle), and runtime snapshots that cannot change the runtime."""

from __future__ import annotations

import threading

from server.core import management
from server.store.runner_config import RunnerConfig
from tests.server.core.conftest import FAKE_MODEL
from tests.server.dmr_fixtures import push_dmr_gguf, tiny_gguf

USER = [{"role": "user", "content": "hi"}]


def runtime_of(client):
    return client.application.extensions["dmr"].runtime


def load(client):
    response = client.post("/v1/chat/completions", json={"model": FAKE_MODEL,
                                                         "messages": USER})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_dmr_delete_untags_then_deletes_unloaded_with_its_config(make_app):
    client, engine = make_app()
    runtime = runtime_of(client)
    assert client.post(f"/models/{FAKE_MODEL}/tag?repo=ai/other&tag=v1").status_code == 201
    load(client)
    model_id = runtime.store.get(FAKE_MODEL).id
    runtime.configs.put(model_id, RunnerConfig(context_size=256))

    first = client.delete(f"/models/{FAKE_MODEL}")
    assert first.get_json() == [{"Untagged": "ai/fake:latest"}]
    assert runtime.is_loaded(model_id) and runtime.configs.get(model_id) is not None

    last = client.delete("/models/ai/other:v1")
    assert last.status_code == 200
    assert {"Deleted": model_id} in last.get_json()
    assert not runtime.is_loaded(model_id) and not engine.models[0].alive()
    assert runtime.configs.get(model_id) is None


def test_ollama_delete_decides_as_dmr_does(make_app):
    client, engine = make_app()
    runtime = runtime_of(client)
    load(client)
    model_id = runtime.store.get(FAKE_MODEL).id
    runtime.configs.put(model_id, RunnerConfig(context_size=256))
    response = client.delete("/api/delete", json={"model": FAKE_MODEL})
    assert response.status_code == 200
    assert runtime.store.find(model_id) is None
    assert runtime.configs.get(model_id) is None and not engine.models[0].alive()
    missing = client.delete("/api/delete", json={"model": FAKE_MODEL})
    assert missing.status_code == 404 and "not found" in missing.get_json()["error"]


def test_delete_of_a_model_in_use_is_refused_in_each_dialect(make_app):
    client, _ = make_app()
    runtime = runtime_of(client)
    lease = runtime.acquire(FAKE_MODEL)
    try:
        dmr = client.delete(f"/models/{FAKE_MODEL}")
        assert dmr.status_code == 409 and dmr.mimetype == "text/plain"
        ollama = client.delete("/api/delete", json={"model": FAKE_MODEL})
        assert ollama.status_code == 409 and "in use" in ollama.get_json()["error"]
        assert runtime.store.find(FAKE_MODEL) is not None
    finally:
        runtime.release(lease)
    assert client.delete(f"/models/{FAKE_MODEL}").status_code == 200


def test_purge_unloads_everything_and_forgets_configs(make_app):
    client, engine = make_app()
    runtime = runtime_of(client)
    load(client)
    runtime.configs.put(runtime.store.get(FAKE_MODEL).id, RunnerConfig(context_size=256))
    assert client.delete("/models/purge").status_code == 200
    assert runtime.store.list() == [] and list(runtime.configs.items()) == []
    assert runtime.loaded() == [] and not engine.models[0].alive()


def test_ollama_keep_alive_zero_unloads_a_busy_model_when_it_is_done(make_app):
    client, engine = make_app()
    runtime = runtime_of(client)
    lease = runtime.acquire(FAKE_MODEL)
    response = client.post("/api/generate", json={"model": FAKE_MODEL, "keep_alive": 0})
    assert response.status_code == 200 and response.get_json()["done_reason"] == "unload"
    assert runtime.is_loaded(lease.stored.id)  # still serving its request
    runtime.release(lease)
    assert not runtime.is_loaded(lease.stored.id) and not engine.models[0].alive()


def test_loaded_returns_snapshots(make_app):
    client, _ = make_app()
    runtime = runtime_of(client)
    load(client)
    (snapshot,) = runtime.loaded()
    snapshot.keep_alive = 0.0
    snapshot.in_use = 5
    (again,) = runtime.loaded()
    assert again.keep_alive == -1 and again.in_use == 0
    assert again.model is snapshot.model  # the engine model itself is shared, not copied


def test_configure_refuses_a_busy_model_and_reloads_an_idle_one(make_app):
    client, engine = make_app()
    runtime = runtime_of(client)
    lease = runtime.acquire(FAKE_MODEL)
    busy = client.post("/engines/_configure", json={"model": FAKE_MODEL, "context-size": 128})
    assert busy.status_code == 409 and "runner already active" in busy.get_data(as_text=True)
    runtime.release(lease)
    done = client.post("/engines/_configure", json={"model": FAKE_MODEL, "context-size": 128})
    assert done.status_code == 202
    management._preloads[lease.stored.id].join(10)
    assert not engine.models[0].alive()  # unloaded, then preloaded with the new context
    assert engine.models[-1].alive() and engine.models[-1].info.n_ctx == 128


class CountingSlots:
    """The two pull slots, counting who took one."""

    def __init__(self):
        self.slots = threading.BoundedSemaphore(2)
        self.taken = 0

    def __enter__(self):
        self.slots.acquire()
        self.taken += 1

    def __exit__(self, *exc):
        self.slots.release()


def test_every_dialect_pulls_within_the_two_pull_limit(make_app, registry, monkeypatch):
    client, _ = make_app()
    slots = CountingSlots()
    monkeypatch.setattr(management, "PULL_SLOTS", slots)
    push_dmr_gguf(registry.url, "floors/one", "v1", tiny_gguf(seed=3))
    push_dmr_gguf(registry.url, "floors/two", "v1", tiny_gguf(seed=4))

    dmr = client.post("/models/create", json={"from": f"{registry.host}/floors/one:v1"})
    assert dmr.status_code == 200 and "success" in dmr.get_data(as_text=True)
    assert slots.taken == 1
    ollama = client.post("/api/pull", json={"model": f"{registry.host}/floors/two:v1",
                                            "stream": False})
    assert ollama.status_code == 200 and ollama.get_json() == {"status": "success"}
    assert slots.taken == 2
