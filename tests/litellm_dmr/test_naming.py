"""Model-name, base-URL and env resolution: pure functions, no server."""

from __future__ import annotations

import pytest

from litellm_dmr.naming import (
    DEFAULT_API_BASE,
    DUMMY_API_KEY,
    ENV_API_BASE,
    ENV_API_KEY,
    KNOWN_ENGINES,
    resolve_api_base,
    resolve_api_key,
    resolve_target,
    split_api_base,
    split_engine,
)


@pytest.mark.parametrize("name,engine,model", [
    ("ai/smollm2", None, "ai/smollm2"),
    ("ai/smollm2:360M-Q4_K_M", None, "ai/smollm2:360M-Q4_K_M"),
    ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", None,
     "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
    ("llama-3.1", None, "llama-3.1"),
    ("smollm2", None, "smollm2"),
    ("llama.cpp/ai/smollm2", "llama.cpp", "ai/smollm2"),
    ("llama.cpp/llama-3.1", "llama.cpp", "llama-3.1"),
    ("vllm/hf.co/org/repo:Q4_K_M", "vllm", "hf.co/org/repo:Q4_K_M"),
    ("mlx/ai/smollm2", "mlx", "ai/smollm2"),
    ("sglang/ai/smollm2", "sglang", "ai/smollm2"),
    ("diffusers/ai/stable-diffusion", "diffusers", "ai/stable-diffusion"),
    # Not a known engine: part of the model id (OpenAI's gpt-oss lives under `openai/`).
    ("openai/gpt-oss", None, "openai/gpt-oss"),
    ("llamacpp/ai/smollm2", None, "llamacpp/ai/smollm2"),
    # An engine with nothing after it is not a split.
    ("llama.cpp/", None, "llama.cpp/"),
])
def test_split_engine(name, engine, model):
    assert split_engine(name) == (engine, model)


def test_known_engines_are_dmrs():
    assert set(KNOWN_ENGINES) == {"llama.cpp", "vllm", "mlx", "sglang", "diffusers"}


@pytest.mark.parametrize("base,root,engine", [
    ("http://localhost:12434", "http://localhost:12434", None),
    ("http://localhost:12434/", "http://localhost:12434", None),
    ("http://localhost:12434/v1", "http://localhost:12434", None),
    ("http://localhost:12434/engines", "http://localhost:12434", None),
    ("http://localhost:12434/engines/", "http://localhost:12434", None),
    ("http://localhost:12434/engines/v1", "http://localhost:12434", None),
    ("http://localhost:12434/engines/v1/", "http://localhost:12434", None),
    ("http://localhost:12434/engines/llama.cpp", "http://localhost:12434", "llama.cpp"),
    ("http://localhost:12434/engines/llama.cpp/v1", "http://localhost:12434", "llama.cpp"),
    ("http://localhost:12434/engines/vllm/v1/", "http://localhost:12434", "vllm"),
    # A path prefix (reverse proxy) is kept.
    ("https://gw.example/dmr", "https://gw.example/dmr", None),
    ("https://gw.example/dmr/engines/mlx/v1", "https://gw.example/dmr", "mlx"),
    # `/x/llama.cpp` is not `/engines/llama.cpp`.
    ("http://h/x/llama.cpp", "http://h/x/llama.cpp", None),
    ("  http://h:1  ", "http://h:1", None),
])
def test_split_api_base(base, root, engine):
    assert split_api_base(base) == (root, engine)


def test_api_base_precedence():
    env = {ENV_API_BASE: "http://env:1"}
    assert resolve_api_base("http://arg:2", env) == "http://arg:2"
    assert resolve_api_base(None, env) == "http://env:1"
    assert resolve_api_base("", env) == "http://env:1"
    assert resolve_api_base(None, {}) == DEFAULT_API_BASE == "http://localhost:12434"


def test_api_base_reads_process_env(monkeypatch):
    monkeypatch.setenv(ENV_API_BASE, "http://from-env:9")
    assert resolve_api_base(None) == "http://from-env:9"
    monkeypatch.delenv(ENV_API_BASE)
    assert resolve_api_base(None) == DEFAULT_API_BASE


def test_api_key_precedence():
    env = {ENV_API_KEY: "env-key"}
    assert resolve_api_key("arg-key", env) == "arg-key"
    assert resolve_api_key(None, env) == "env-key"
    assert resolve_api_key(None, {}) == DUMMY_API_KEY


@pytest.mark.parametrize("model,base,url,sent", [
    ("ai/smollm2", "http://h:1",
     "http://h:1/engines/llama.cpp/v1/chat/completions", "ai/smollm2"),
    ("llama.cpp/ai/smollm2", "http://h:1",
     "http://h:1/engines/llama.cpp/v1/chat/completions", "ai/smollm2"),
    ("vllm/ai/smollm2", "http://h:1",
     "http://h:1/engines/vllm/v1/chat/completions", "ai/smollm2"),
    # Bases that already hold the engine path are not doubled.
    ("ai/smollm2", "http://h:1/engines/llama.cpp/v1",
     "http://h:1/engines/llama.cpp/v1/chat/completions", "ai/smollm2"),
    ("ai/smollm2", "http://h:1/engines/v1/",
     "http://h:1/engines/llama.cpp/v1/chat/completions", "ai/smollm2"),
    ("ai/smollm2", "http://h:1/engines/mlx",
     "http://h:1/engines/mlx/v1/chat/completions", "ai/smollm2"),
    # The engine in the model name wins over the one in the base.
    ("vllm/ai/smollm2", "http://h:1/engines/llama.cpp/v1",
     "http://h:1/engines/vllm/v1/chat/completions", "ai/smollm2"),
])
def test_resolve_target_chat(model, base, url, sent):
    target = resolve_target(model, "chat/completions", base, env={})
    assert (target.url, target.model) == (url, sent)


def test_resolve_target_defaults_to_env_then_dmr_port():
    t = resolve_target("ai/smollm2", "embeddings", None, env={ENV_API_BASE: "http://e:5/"})
    assert t.url == "http://e:5/engines/llama.cpp/v1/embeddings"
    t = resolve_target("ai/smollm2", "embeddings", None, env={})
    assert t.url == "http://localhost:12434/engines/llama.cpp/v1/embeddings"


def test_images_go_to_diffusers_whatever_the_base_says():
    kwargs = {"default_engine": "diffusers", "base_engine_applies": False, "env": {}}
    t = resolve_target("ai/sd", "images/generations", "http://h:1/engines/llama.cpp", **kwargs)
    assert t.url == "http://h:1/engines/diffusers/v1/images/generations"
    t = resolve_target("diffusers/ai/sd", "images/generations", "http://h:1", **kwargs)
    assert (t.url, t.model) == ("http://h:1/engines/diffusers/v1/images/generations", "ai/sd")
