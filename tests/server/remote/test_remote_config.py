"""Remote engine settings: the `engines:` section, DMR_ENGINE_<NAME>, and what is refused."""

from __future__ import annotations

import pytest

from server.config import Settings
from server.engines.remote.config import RemoteConfig, UpstreamConfig


def test_yaml_section_with_keys_and_durations(tmp_path, monkeypatch):
    monkeypatch.delenv("DMR_ENGINE_VLLM", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text(
        "engines:\n"
        "  vllm:\n"
        "    upstreams: [{url: 'http://gpu-1:8000/v1/', api_key_env: VLLM_KEY},"
        " {url: 'http://gpu-2:8000/v1'}]\n"
        "    health_interval: 10s\n"
        "    balance: round-robin\n"
        "    cooldown: 2s\n"
        "    timeout: 5m\n")
    vllm = Settings.load(config).engines["vllm"]
    assert vllm == RemoteConfig(
        "vllm", (UpstreamConfig("http://gpu-1:8000/v1", "VLLM_KEY"),
                 UpstreamConfig("http://gpu-2:8000/v1")),
        health_interval=10.0, balance="round-robin", cooldown=2.0, timeout=300.0)


def test_environment_names_the_upstreams(monkeypatch):
    monkeypatch.setenv("DMR_ENGINE_VLLM", "http://gpu-1:8000/v1, http://gpu-2:8000/v1")
    monkeypatch.setenv("DMR_ENGINE_MY_GPU", "https://box:9000/v1")
    engines = Settings.load().engines
    assert [u.url for u in engines["vllm"].upstreams] == ["http://gpu-1:8000/v1",
                                                          "http://gpu-2:8000/v1"]
    assert [u.url for u in engines["my_gpu"].upstreams] == ["https://box:9000/v1"]
    assert engines["vllm"].balance == "least-busy" and engines["vllm"].health_interval == 10


def test_environment_replaces_the_file_upstreams_and_keeps_the_options(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("engines:\n  sglang:\n    upstreams: ['http://old:1/v1']\n"
                      "    api_key_env: SGL_KEY\n    health_interval: 3s\n")
    monkeypatch.setenv("DMR_ENGINE_SGLANG", "http://new-1:30000/v1,http://new-2:30000/v1")
    sglang = Settings.load(config).engines["sglang"]
    assert [(u.url, u.api_key_env) for u in sglang.upstreams] == [
        ("http://new-1:30000/v1", "SGL_KEY"), ("http://new-2:30000/v1", "SGL_KEY")]
    assert sglang.health_interval == 3


@pytest.mark.parametrize("section,message", [
    ({"vllm": {"upstreams": []}}, "non-empty list"),
    ({"vllm": {"upstreams": ["gpu-1:8000/v1"]}}, "not an http"),
    ({"vllm": {"upstreams": ["ftp://gpu/v1"]}}, "not an http"),
    ({"vllm": {"upstreams": ["http://a/v1", "http://a/v1/"]}}, "listed twice"),
    ({"vllm": {"upstreams": ["http://a/v1"], "health_interval": "soon"}}, "health_interval"),
    ({"vllm": {"upstreams": ["http://a/v1"], "health_interval": 0}}, "positive"),
    ({"vllm": {"upstreams": ["http://a/v1"], "balance": "random"}}, "balance"),
    ({"vllm": {"upstreams": ["http://a/v1"], "colour": "red"}}, "unknown key"),
    ({"vllm": {"upstreams": [{"url": "http://a/v1", "key": "x"}]}}, "unknown key"),
    ({"llama.cpp": {"upstreams": ["http://a/v1"]}}, "local engine"),
    ({"Bad Name": {"upstreams": ["http://a/v1"]}}, "not a valid engine name"),
    (["http://a/v1"], "mapping"),
])
def test_bad_sections_say_what_to_fix(section, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_mapping({"engines": section})


def test_a_bare_list_is_the_upstreams():
    engines = Settings.from_mapping({"engines": {"mlx": ["http://mac:8080/v1"]}}).engines
    assert engines["mlx"].upstreams == (UpstreamConfig("http://mac:8080/v1"),)


def test_no_engines_by_default(monkeypatch):
    for name in [k for k in __import__("os").environ if k.startswith("DMR_ENGINE_")]:
        monkeypatch.delenv(name)
    assert Settings.load().engines == {}
