"""GET /metrics: DMR's Prometheus text (llama.cpp's metric names, labelled by backend, model and
mode), counted from real requests on a server of its own so the totals are exact."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODEL, NO_EOS, ServerProcess

LABELS = {"backend": "llama.cpp", "model": "ai/smollm2:latest", "mode": "completion"}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    base = tmp_path_factory.mktemp("metrics")
    proc = ServerProcess(base / "models", base / "server.log")
    proc.wait_ready()
    yield proc.url
    proc.stop()


def scrape(url: str) -> dict[str, float]:
    r = requests.get(f"{url}/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            assert sample.labels == LABELS, sample
            values[sample.name] = sample.value
    return values


def chat(url: str, content: str, max_tokens: int) -> dict:
    r = requests.post(f"{url}/engines/v1/chat/completions", json={
        "model": MODEL, "max_tokens": max_tokens, "logit_bias": NO_EOS,
        "messages": [{"role": "user", "content": content}]})
    assert r.status_code == 200, r.text
    return r.json()["usage"]


def test_no_runner_until_a_model_loads(url):
    r = requests.get(f"{url}/metrics")
    assert r.status_code == 200 and r.text == "# No active runners\n"


def test_totals_count_the_requests_served(url):
    first = chat(url, "Name three rivers.", 12)
    after_one = scrape(url)
    assert after_one["llamacpp:tokens_predicted_total"] == 12
    assert after_one["llamacpp:prompt_tokens_total"] == first["prompt_tokens"]
    assert after_one["llamacpp:n_decode_total"] >= 12
    assert after_one["llamacpp:prompt_seconds_total"] > 0
    assert after_one["llamacpp:predicted_tokens_seconds"] > 0
    assert after_one["llamacpp:requests_processing"] == 0
    assert after_one["llamacpp:requests_deferred"] == 0
    assert 0 < after_one["llamacpp:kv_cache_usage_ratio"] < 1
    assert after_one["llamacpp:kv_cache_tokens"] >= first["prompt_tokens"]

    # The same prompt again: its cached prefix is not processed twice.
    second = chat(url, "Name three rivers.", 7)
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0
    after_two = scrape(url)
    assert after_two["llamacpp:tokens_predicted_total"] == 12 + 7
    assert after_two["llamacpp:prompt_tokens_total"] == (
        first["prompt_tokens"] + second["prompt_tokens"] - cached)

    claude = requests.post(f"{url}/v1/messages", json={
        "model": MODEL, "max_tokens": 5, "logit_bias": NO_EOS,
        "messages": [{"role": "user", "content": "Hi"}]})
    assert claude.status_code == 200
    assert scrape(url)["llamacpp:tokens_predicted_total"] == 12 + 7 + 5


def test_disable_metrics_removes_the_route(tmp_path):
    proc = ServerProcess(tmp_path / "models", tmp_path / "server.log",
                         env={"DISABLE_METRICS": "1"})
    try:
        proc.wait_ready()
        assert requests.get(f"{proc.url}/metrics").status_code == 404
    finally:
        proc.stop()
