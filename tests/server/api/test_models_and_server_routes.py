"""Server-level routes and the model listings (OpenAI and DMR native)."""

import requests


def test_root_health_version_info(server_url):
    root = requests.get(server_url + "/")
    assert root.status_code == 200 and root.text == "Docker Model Runner is running"
    assert requests.get(server_url + "/health").json() == {"status": "ok"}
    assert requests.get(server_url + "/version").json()["version"]
    info = requests.get(server_url + "/info").json()
    assert info["engines"]["llama.cpp"] == "installed"
    assert info["engines"]["vllm"] == "not installed"
    assert any("ai/smollm2:latest" in m["tags"] for m in info["models"])


def test_default_model_is_a_real_store_entry(server_url):
    [model] = [m for m in requests.get(server_url + "/models").json()
               if "ai/smollm2:latest" in m["tags"]]
    assert model["id"].startswith("sha256:") and len(model["id"]) == 71
    assert set(model["tags"]) >= {"ai/smollm2:latest", "ai/smollm2:135M-Q4_1"}
    assert model["config"]["format"] == "gguf" and model["config"]["quantization"] == "Q4_1"
    by_short_id = requests.get(server_url + "/models/" + model["id"][7:19])
    assert by_short_id.json()["id"] == model["id"]


def test_openai_model_list_and_get(openai_client):
    ids = [m.id for m in openai_client.models.list()]
    assert "ai/smollm2:latest" in ids
    model = openai_client.models.retrieve("ai/smollm2")
    assert model.id == "ai/smollm2:latest" and model.owned_by == "docker"
    assert model.model_extra["dmr"]["context_window"] == 8192


def test_models_list_ignores_engine_segment(server_url):
    r = requests.get(server_url + "/engines/anything/v1/models")
    assert r.status_code == 200 and r.json()["object"] == "list"


def test_unknown_model_on_native_route_is_plain_text_404(server_url):
    r = requests.get(server_url + "/models/ai/does-not-exist")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/plain")
    assert "not found" in r.text


def test_unknown_path_is_404(server_url):
    assert requests.get(server_url + "/engines/v1/nothing-here").status_code == 404
