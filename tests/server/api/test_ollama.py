"""The Ollama API through the official `ollama` client against the real server and model."""

import hashlib
import json
import math
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import ollama
import pytest
import requests

from server.store.bundled import bundled_gguf

HELLO = [{"role": "user", "content": "Say hello."}]
STORY = "Tell me a long story about a dragon."
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def client(server_url):
    return ollama.Client(host=server_url)


def loaded_names(client) -> list[str]:
    return [m.model for m in client.ps().models]


def assert_metrics(reply, wall_seconds: float):
    """Real counts and durations, in nanoseconds."""
    assert reply.done is True and reply.done_reason in ("stop", "length")
    assert reply.prompt_eval_count > 0 and reply.eval_count > 0
    assert reply.prompt_eval_duration > 0 and reply.eval_duration > 0
    assert reply.load_duration >= 0
    assert reply.total_duration >= reply.prompt_eval_duration + reply.eval_duration
    assert 1e6 < reply.total_duration <= wall_seconds * 1e9


# ------------------------------------------------------------------------------ models


def test_version(server_url):
    reply = requests.get(server_url + "/api/version", timeout=10)
    assert reply.status_code == 200
    assert [int(x) for x in reply.json()["version"].split(".")] >= [0, 12]


def test_list(client, model):
    models = {m.model: m for m in client.list().models}
    entry = models[model + ":latest"]
    assert entry.size > 1_000_000 and len(entry.digest) == 64
    assert entry.details.format == "gguf" and entry.details.family == "llama"
    assert entry.details.quantization_level == "Q4_1" and entry.details.parameter_size
    assert entry.modified_at.year >= 2024


def test_show(client, model):
    info = client.show(model)
    assert "completion" in info.capabilities
    assert "vision" not in info.capabilities  # no projector
    assert info.modelinfo["general.architecture"] == "llama"
    assert info.modelinfo["llama.context_length"] == 8192
    assert info.modelinfo["general.parameter_count"] > 100_000_000
    assert "<|im_start|>" in info.template
    assert info.details.family == "llama" and "num_ctx" in info.parameters


def test_show_accepts_legacy_name(server_url, model):
    reply = requests.post(server_url + "/api/show", json={"name": model}, timeout=10)
    assert reply.status_code == 200 and reply.json()["details"]["format"] == "gguf"


def test_ps_after_a_load(client, model):
    before = datetime.now(timezone.utc)
    reply = client.chat(model=model, messages=[], keep_alive="10m")
    assert reply.done_reason == "load"
    entry = next(m for m in client.ps().models if m.model.startswith(model))
    assert entry.context_length and 0 < entry.context_length <= 8192
    assert entry.size > 1_000_000 and len(entry.digest) == 64
    assert before + timedelta(minutes=9) < entry.expires_at < before + timedelta(minutes=11)


def test_load_and_unload(client, model):
    reply = client.generate(model=model, prompt="", keep_alive=0)
    assert reply.done and reply.done_reason == "unload"
    assert not any(n.startswith(model) for n in loaded_names(client))
    reply = client.chat(model=model, messages=[])
    assert reply.done and reply.done_reason == "load" and reply.load_duration > 0
    assert reply.message.role == "assistant" and reply.message.content == ""
    assert any(n.startswith(model) for n in loaded_names(client))
    reply = client.chat(model=model, messages=[], keep_alive=0)
    assert reply.done_reason == "unload"
    assert not any(n.startswith(model) for n in loaded_names(client))


def test_keep_alive_zero_unloads_after_the_request(client, model):
    reply = client.generate(model=model, prompt="Hi", keep_alive=0, options={**GREEDY, "num_predict": 2})
    assert reply.done_reason in ("stop", "length") and reply.load_duration >= 0
    deadline = time.monotonic() + 5
    while any(n.startswith(model) for n in loaded_names(client)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(n.startswith(model) for n in loaded_names(client))


@pytest.fixture(scope="module")
def oci_registry():
    """A minimal OCI registry on loopback serving the bundled model as `test/tiny:v1`, laid
    out as DMR pushes models (config blob + GGUF layer)."""
    path = bundled_gguf()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    gguf = {"mediaType": "application/vnd.docker.ai.gguf.v3",
            "digest": "sha256:" + digest.hexdigest(), "size": path.stat().st_size}
    config = json.dumps({"config": {"format": "gguf", "architecture": "llama",
                                    "parameters": "134.52 M", "quantization": "Q4_1"},
                         "rootfs": {"type": "rootfs", "diff_ids": [gguf["digest"]]}}).encode()
    config_ref = {"mediaType": "application/vnd.docker.ai.model.config.v0.1+json",
                  "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)}
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config_ref, "layers": [gguf]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path == "/v2/test/tiny/manifests/v1":
                self._send(manifest, "application/vnd.oci.image.manifest.v1+json")
            elif self.path == f"/v2/test/tiny/blobs/{config_ref['digest']}":
                self._send(config, "application/octet-stream")
            elif self.path == f"/v2/test/tiny/blobs/{gguf['digest']}":
                self._send(path.read_bytes(), "application/octet-stream")
            else:
                self._send(b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "application/json",
                           404)

        def _send(self, body: bytes, mime: str, status: int = 200):
            self.send_response(status)
            self.send_header("Content-Type", mime)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"host": f"127.0.0.1:{server.server_port}", "gguf": gguf}
    server.shutdown()
    server.server_close()


def test_pull_from_a_registry(client, oci_registry, model):
    name = f"{oci_registry['host']}/test/tiny:v1"
    lines = list(client.pull(name, stream=True))
    assert lines[0].status == "pulling manifest" and lines[-1].status == "success"
    layers = [p for p in lines if p.digest == oci_registry["gguf"]["digest"]]
    assert layers and layers[-1].total == layers[-1].completed == oci_registry["gguf"]["size"]
    assert all(p.status == f"pulling {p.digest[7:19]}" for p in layers)
    try:
        assert name in {m.model for m in client.list().models}
        reply = client.generate(model=name, prompt="Hi", options={**GREEDY, "num_predict": 2})
        assert reply.done and reply.eval_count > 0
        assert client.pull(name).status == "success"  # again: already there
    finally:
        client.delete(name)
    assert client.generate(model=model, prompt="Hi", options={**GREEDY, "num_predict": 2}).done


def test_pull_unknown_model_is_404(client, oci_registry):
    with pytest.raises(ollama.ResponseError) as info:
        client.pull(f"{oci_registry['host']}/test/missing:v1")
    assert info.value.status_code == 404 and info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        list(client.pull(f"{oci_registry['host']}/test/missing:v1", stream=True))
    assert info.value.status_code == 404


def test_pull_of_a_stored_model_works_offline(client, model):
    name = "localhost:1/offline/smollm2:v1"  # nothing listens on port 1
    client.copy(model, name)
    try:
        assert client.pull(name).status == "success"
        lines = list(client.pull(name, stream=True))
        assert lines[0].status == "pulling manifest" and lines[-1].status == "success"
        assert any("local copy" in p.status for p in lines)
        layers = [p for p in lines if p.digest]
        assert layers and all(p.total == p.completed > 0 for p in layers)
    finally:
        client.delete(name)


def test_pull_unreachable_registry_fails(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.pull("localhost:1/nobody/nothing:latest")
    assert info.value.status_code >= 500 and "localhost:1" in info.value.error


def test_copy_serves_the_same_model_and_delete_removes_only_the_copy(client, model):
    copy = "ai/ollama-copy-test:v1"
    assert client.copy(model, copy).status == "success"
    models = {m.model: m for m in client.list().models}
    assert models[copy].digest == models[model + ":latest"].digest
    reply = client.generate(model=copy, prompt="Hi", options={**GREEDY, "num_predict": 2})
    assert reply.done and reply.eval_count > 0
    assert client.delete(copy).status == "success"
    models = {m.model for m in client.list().models}
    assert copy not in models and model + ":latest" in models
    with pytest.raises(ollama.ResponseError) as info:
        client.delete(copy)
    assert info.value.status_code == 404


def test_delete_and_copy_unknown_are_404(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("ai/no-such-model")
    assert info.value.status_code == 404 and "not found" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        client.copy("ai/no-such-model", "ai/whatever")
    assert info.value.status_code == 404


# ------------------------------------------------------------------------------ chat, generate


def test_chat(client, model):
    started = time.monotonic()
    reply = client.chat(model=model, messages=HELLO, options={**GREEDY, "num_predict": 24})
    assert reply.model == model and reply.message.role == "assistant"
    assert "hello" in reply.message.content.lower()
    assert_metrics(reply, time.monotonic() - started)


def test_chat_stream(client, model):
    started = time.monotonic()
    chunks = list(client.chat(model=model, messages=HELLO, stream=True,
                              options={**GREEDY, "num_predict": 8}))
    assert all(not c.done for c in chunks[:-1]) and chunks[-1].done
    assert all(c.message.role == "assistant" for c in chunks)
    text = "".join(c.message.content for c in chunks)
    assert text and chunks[-1].message.content == ""
    assert chunks[-1].done_reason == "length" and chunks[-1].eval_count == 8
    assert_metrics(chunks[-1], time.monotonic() - started)


def test_eval_count_matches_generated_tokens(client, model):
    reply = client.generate(model=model, prompt=STORY, logprobs=True, top_logprobs=2,
                            options={**GREEDY, "num_predict": 12})
    assert reply.done_reason == "length" and reply.eval_count == 12
    assert len(reply.logprobs) == 12
    assert "".join(lp.token for lp in reply.logprobs) == reply.response
    assert all(len(lp.top_logprobs) == 2 and lp.logprob <= 0 for lp in reply.logprobs)


def test_generate_templated_with_system(client, model):
    started = time.monotonic()
    reply = client.generate(model=model, prompt="Hi", system="You are a pirate.",
                            options={**GREEDY, "num_predict": 8})
    longer = client.generate(model=model, prompt="Hi", options={**GREEDY, "num_predict": 8},
                             system="You are a pirate who sails the seven seas.")
    assert reply.response and longer.prompt_eval_count > reply.prompt_eval_count
    assert_metrics(reply, time.monotonic() - started)


def test_generate_raw_prompt_is_not_templated(client, model):
    raw = client.generate(model=model, prompt="The capital of France is", raw=True,
                          options={**GREEDY, "num_predict": 4})
    templated = client.generate(model=model, prompt="The capital of France is",
                                options={**GREEDY, "num_predict": 4})
    assert raw.prompt_eval_count == 5 < templated.prompt_eval_count
    assert "paris" in raw.response.lower()


def test_generate_stream(client, model):
    chunks = list(client.generate(model=model, prompt=STORY, stream=True,
                                  options={**GREEDY, "num_predict": 6}))
    assert chunks[-1].done and chunks[-1].eval_count == 6
    assert "".join(c.response for c in chunks[:-1]) and chunks[-1].response == ""


def test_stop_option_ends_the_answer(client, model):
    reply = client.generate(model=model, prompt="Count: 1, 2, 3,", raw=True,
                            options={**GREEDY, "num_predict": 24, "stop": [","]})
    assert reply.done_reason == "stop" and "," not in reply.response


def test_num_ctx_caps_the_request(client, model):
    reply = client.generate(model=model, prompt="1, 2, 3, 4,", raw=True,
                            options={**GREEDY, "num_ctx": 12})
    assert reply.done_reason == "length"
    assert reply.prompt_eval_count + reply.eval_count == 12
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model=model, prompt=STORY * 3, options={"num_ctx": 16})
    assert info.value.status_code == 400 and "context" in info.value.error


def test_seed_makes_sampling_repeatable(client, model):
    options = {"seed": 42, "temperature": 1.0, "num_predict": 8}
    first = client.generate(model=model, prompt=STORY, options=options)
    second = client.generate(model=model, prompt=STORY, options=options)
    assert first.response == second.response


def test_think_returns_thinking(client, model):
    # SmolLM2 does not reason natively: the core prompts it to think first.
    reply = client.chat(model=model, messages=HELLO, think=True, options={"num_predict": 24})
    assert reply.done and reply.message.thinking
    assert "<think>" not in reply.message.content
    chunks = list(client.generate(model=model, prompt="Hi", think="low", stream=True,
                                  options={"num_predict": 16}))
    kinds = [("thinking" if c.thinking else "text") for c in chunks if c.thinking or c.response]
    assert kinds[0] == "thinking" and kinds == sorted(kinds, key=lambda k: k == "text")
    assert chunks[-1].done and chunks[-1].eval_count > 0


def test_think_false_gives_no_thinking(client, model):
    reply = client.chat(model=model, messages=HELLO, think=False,
                        options={**GREEDY, "num_predict": 8})
    assert reply.done and not reply.message.thinking and reply.message.content


def test_format_json(client, model):
    reply = client.generate(model=model, format="json", options={**GREEDY, "num_predict": 48},
                            prompt='Reply with a JSON object with one key "answer" set to yes.')
    assert reply.done_reason == "stop"
    assert isinstance(json.loads(reply.response), dict)


def test_format_json_schema(client, model):
    # (Numeric bounds are left out: llama-cpp-python's schema-to-grammar ignores them.)
    schema = {"type": "object", "additionalProperties": False,
              "required": ["name", "age", "mood"],
              "properties": {"name": {"type": "string", "maxLength": 12},
                             "age": {"type": "integer"},
                             "mood": {"enum": ["happy", "sad"]}}}
    reply = client.chat(model=model, format=schema, options={**GREEDY, "num_predict": 48},
                        messages=[{"role": "user", "content": "Describe a person as JSON."}])
    jsonschema.validate(json.loads(reply.message.content), schema)
    chunks = list(client.generate(model=model, prompt="A person as JSON:", format=schema,
                                  stream=True, options={**GREEDY, "num_predict": 48}))
    jsonschema.validate(json.loads("".join(c.response for c in chunks)), schema)


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}

#: Constrains the answer to a call of get_weather, so the tiny model reliably makes one.
CALL_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
               "properties": {"name": {"const": "get_weather"}, "arguments": {
                   "type": "object", "additionalProperties": False, "required": ["city"],
                   "properties": {"city": {"type": "string", "maxLength": 12}}}}}

ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]


def test_tool_calls_have_object_arguments(client, model):
    reply = client.chat(model=model, messages=ASK_WEATHER, tools=[WEATHER_TOOL],
                        format=CALL_SCHEMA, options={**GREEDY, "num_predict": 48})
    assert reply.done_reason == "stop" and reply.message.content == ""
    (call,) = reply.message.tool_calls
    assert call.function.name == "get_weather"
    assert isinstance(call.function.arguments, dict) and call.function.arguments["city"]


def test_tool_calls_stream(client, model):
    chunks = list(client.chat(model=model, messages=ASK_WEATHER, tools=[WEATHER_TOOL],
                              format=CALL_SCHEMA, stream=True,
                              options={**GREEDY, "num_predict": 48}))
    calls = [call for c in chunks for call in (c.message.tool_calls or [])]
    assert len(calls) == 1 and isinstance(calls[0].function.arguments, dict)
    assert chunks[-1].done


def test_tool_result_round_trip(client, model):
    messages = ASK_WEATHER + [
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "22 C and sunny"},
    ]
    reply = client.chat(model=model, messages=messages, tools=[WEATHER_TOOL],
                        options={"num_predict": 8})
    assert reply.done and reply.prompt_eval_count > 30


def test_tools_without_format_answer_in_the_reply_shape(client, model):
    reply = client.chat(model=model, messages=ASK_WEATHER, tools=[WEATHER_TOOL],
                        options={**GREEDY, "num_predict": 32})
    assert reply.done
    for call in reply.message.tool_calls or []:
        assert isinstance(call.function.arguments, dict)
    assert reply.message.content or reply.message.tool_calls


# ------------------------------------------------------------------------------ embeddings


def norm(vector) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_embed_is_normalised(client, model):
    reply = client.embed(model=model, input="The sky is blue.")
    (vector,) = reply.embeddings
    assert len(vector) == 576 and norm(vector) == pytest.approx(1.0, abs=1e-4)
    assert reply.prompt_eval_count > 0 and reply.total_duration > 0


def test_embed_list_and_dimensions(client, model):
    reply = client.embed(model=model, input=["first text", "second, longer text"],
                         dimensions=64)
    assert len(reply.embeddings) == 2
    assert all(len(v) == 64 and norm(v) == pytest.approx(1.0, abs=1e-4)
               for v in reply.embeddings)
    assert reply.embeddings[0] != reply.embeddings[1]


def test_embed_truncate_false_rejects_a_too_long_input(client, model):
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model=model, input="word " * 5000, truncate=False)
    assert info.value.status_code == 400


def test_embeddings_legacy_is_not_normalised(client, model):
    reply = client.embeddings(model=model, prompt="The sky is blue.")
    assert len(reply.embedding) == 576 and abs(norm(reply.embedding) - 1.0) > 0.01
    normalised = client.embed(model=model, input="The sky is blue.").embeddings[0]
    scale = norm(reply.embedding)
    assert [x / scale for x in reply.embedding] == pytest.approx(normalised, abs=1e-4)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("path, body, status", [
    ("/api/chat", "{not json", 400),
    ("/api/chat", "", 400),
    ("/api/chat", '["model"]', 400),
    ("/api/chat", json.dumps({"model": "ai/smollm2", "messages": "hi"}), 400),
    ("/api/chat", json.dumps({"model": "ai/smollm2", "stream": "yes"}), 400),
    ("/api/chat", json.dumps({"model": "ai/smollm2", "messages": [{"role": "wizard"}]}), 400),
    ("/api/chat", json.dumps({"messages": []}), 400),
    ("/api/generate", json.dumps({"model": "ai/smollm2", "prompt": 5}), 400),
    ("/api/generate", json.dumps({"model": "ai/smollm2", "prompt": "x",
                                  "options": {"temperature": "hot"}}), 400),
    ("/api/generate", json.dumps({"model": "ai/smollm2", "prompt": "x", "think": "extreme"}),
     400),
    ("/api/generate", json.dumps({"model": "ai/smollm2", "prompt": "x", "format": "xml"}), 400),
    ("/api/generate", json.dumps({"model": "ai/smollm2", "prompt": "x",
                                  "images": ["aGVsbG8="]}), 400),
    ("/api/generate", json.dumps({"model": "ai/smollm2", "prompt": "x",
                                  "keep_alive": "someday"}), 400),
    ("/api/embed", json.dumps({"model": "ai/smollm2", "input": [1, 2]}), 400),
    ("/api/embed", json.dumps({"model": "ai/smollm2", "input": "x", "dimensions": 99999}), 400),
    ("/api/show", json.dumps({}), 400),
    ("/api/chat", json.dumps({"model": "ai/nope", "messages": HELLO}), 404),
    ("/api/generate", json.dumps({"model": "ai/nope", "prompt": "x"}), 404),
    ("/api/embed", json.dumps({"model": "ai/nope", "input": "x"}), 404),
    ("/api/embeddings", json.dumps({"model": "ai/nope", "prompt": "x"}), 404),
    ("/api/show", json.dumps({"model": "ai/nope"}), 404),
])
def test_errors_are_ollama_shaped(server_url, path, body, status):
    reply = requests.post(server_url + path, data=body, timeout=30,
                          headers={"Content-Type": "application/json"})
    assert reply.status_code == status
    error = reply.json()["error"]
    assert isinstance(error, str) and error


def test_client_raises_response_error_for_unknown_model(client):
    for stream in (False, True):
        with pytest.raises(ollama.ResponseError) as info:
            result = client.chat(model="ai/nope", messages=HELLO, stream=stream)
            if stream:
                list(result)
        assert info.value.status_code == 404 and "ai/nope" in info.value.error


def test_ollama_host_environment_variable(monkeypatch, server_url, model):
    monkeypatch.setenv("OLLAMA_HOST", server_url)
    env_client = ollama.Client()
    assert any(m.model == model + ":latest" for m in env_client.list().models)
    reply = env_client.generate(model=model, prompt="Hi", options={**GREEDY, "num_predict": 2})
    assert reply.done and reply.eval_count > 0
