"""Helpers for the runner tests: find a model's runner process, read its memory, stream."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import requests

FAKE_AMX_CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C (simulated)
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""


def fake_amx_cpuinfo(directory: Path) -> str:
    path = directory / "cpuinfo-amx"
    path.write_text(FAKE_AMX_CPUINFO)
    return str(path)


def ps(url: str) -> list[dict]:
    r = requests.get(url + "/engines/ps", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def runner_of(url: str, model: str) -> dict:
    for entry in ps(url):
        if entry["model_name"] == model or entry["model_name"].startswith(model + ":"):
            return entry
    raise AssertionError(f"{model} is not loaded: {ps(url)}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def chat(url: str, model: str, content: str = "Say hello.", **extra) -> requests.Response:
    return requests.post(url + "/engines/v1/chat/completions", timeout=120, json={
        "model": model, "messages": [{"role": "user", "content": content}],
        "max_tokens": 8, **extra})


# Each dialect's streaming request, and how to tell a content line from its error line.
def stream_request(url: str, dialect: str, model: str, max_tokens: int, **sampling):
    messages = [{"role": "user", "content": "Tell me a long story about the sea."}]
    if dialect == "openai":
        return requests.post(url + "/engines/v1/chat/completions", stream=True, timeout=120,
                             json={"model": model, "messages": messages, "stream": True,
                                   "max_tokens": max_tokens, **sampling})
    if dialect == "anthropic":
        return requests.post(url + "/v1/messages", stream=True, timeout=120,
                             json={"model": model, "messages": messages, "stream": True,
                                   "max_tokens": max_tokens, **sampling})
    options = {"num_predict": max_tokens}
    if "logit_bias" in sampling:
        sampling = {}
    return requests.post(url + "/api/chat", stream=True, timeout=120,
                         json={"model": model, "messages": messages, "options": options})


def events(response: requests.Response, dialect: str):
    """Parsed stream items: dicts from SSE `data:` lines or NDJSON lines."""
    for line in response.iter_lines():
        if not line:
            continue
        if dialect == "ollama":
            yield json.loads(line)
        elif line.startswith(b"data: ") and line != b"data: [DONE]":
            yield json.loads(line[6:])


def has_text(item: dict, dialect: str) -> bool:
    if dialect == "openai":
        return bool((item.get("choices") or [{}])[0].get("delta", {}).get("content"))
    if dialect == "anthropic":
        return item.get("type") == "content_block_delta"
    return bool(item.get("message", {}).get("content"))


def error_of(item: dict, dialect: str) -> str | None:
    """The error message an in-band error item carries, in its dialect's shape."""
    if dialect == "openai":
        error = item.get("error")
        if error:
            assert error["type"] == "server_error" and error["code"] == "runner_crashed", error
            return error["message"]
    elif dialect == "anthropic":
        if item.get("type") == "error":
            assert item["error"]["type"] == "api_error", item
            return item["error"]["message"]
    elif "error" in item:
        assert isinstance(item["error"], str)
        return item["error"]
    return None


def non_stream(url: str, dialect: str, model: str, max_tokens: int) -> requests.Response:
    messages = [{"role": "user", "content": "Tell me a long story about the sea."}]
    bias = {"0": -100, "2": -100}
    if dialect == "openai":
        return requests.post(url + "/engines/v1/chat/completions", timeout=120, json={
            "model": model, "messages": messages, "max_tokens": max_tokens, "logit_bias": bias})
    if dialect == "anthropic":
        return requests.post(url + "/v1/messages", timeout=120, json={
            "model": model, "messages": messages, "max_tokens": max_tokens})
    return requests.post(url + "/api/chat", timeout=120, json={
        "model": model, "messages": messages, "stream": False,
        "options": {"num_predict": max_tokens}})


def error_message(response: requests.Response, dialect: str, code: str = "runner_crashed") -> str:
    body = response.json()
    if dialect == "openai":
        assert body["error"]["code"] == code and body["error"]["type"] == "server_error", body
        return body["error"]["message"]
    if dialect == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "api_error", body
        return body["error"]["message"]
    assert isinstance(body["error"], str), body
    return body["error"]


def processing(url: str) -> int:
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("llamacpp:requests_processing"))


def when(predicate, timeout: float = 30, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def kill(pid: int, sig: int) -> None:
    os.kill(pid, sig)
