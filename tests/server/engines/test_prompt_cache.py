"""The prompt cache beyond the slots, end to end with the real model (engines/llamacpp/
prompt_cache.py): three conversations for two slots, then a restart, then damaged files.

One models directory for the module; each test starts the server it needs on it, in order:
the slots' and the RAM cache's states reach the disk when a server stops.
"""

from __future__ import annotations

import pytest
import requests

from server.engines.llamacpp.prompt_spill import SUFFIX
from tests.conftest import MODEL, ServerProcess

ENV = {"DMR_PARALLEL": "2", "DMR_CONTEXT_SIZE": "1024", "DMR_PROMPT_CACHE_MIB": "64",
       "DMR_PROMPT_CACHE_DISK_MIB": "64"}


def system(i: int) -> str:
    # Different from their first word on: no slot shares a prefix with another's.
    return f"Conversation {i}. " + f"You keep the logbook of lighthouse number {i}. " * 25


def history(i: int) -> list[dict]:
    return [{"role": "system", "content": system(i)},
            {"role": "user", "content": "What is your job?"}]


def ask(url: str, messages: list[dict]) -> dict:
    r = requests.post(url + "/v1/chat/completions", timeout=300, json={
        "model": MODEL, "messages": messages, "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()


def follow_up(i: int, first: dict) -> list[dict]:
    return history(i) + [{"role": "assistant", "content": first["choices"][0]["message"]["content"]},
                         {"role": "user", "content": "And then?"}]


def hits(url: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("llamacpp:prompt_cache_hits_total"))


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    base = tmp_path_factory.mktemp("prompt-cache")
    return {"dir": base / "models", "base": base, "first": {}}


def start(place, name: str) -> ServerProcess:
    server = ServerProcess(place["dir"], place["base"] / f"{name}.log", env=ENV)
    server.wait_ready()
    return server


def test_a_conversation_whose_slot_was_reused_resumes_from_the_cache(place):
    server = start(place, "first")
    try:
        first = place["first"]
        for i in range(3):  # the third takes the least recently used slot: conversation 0's
            first[i] = ask(server.url, history(i))
        assert first[0]["usage"]["prompt_tokens"] > 250
        again = ask(server.url, follow_up(0, first[0]))
        usage = again["usage"]
        assert usage["prompt_tokens_details"]["cached_tokens"] >= first[0]["usage"]["prompt_tokens"] - 8
        assert hits(server.url) >= 1
    finally:
        server.stop()  # graceful: the runner writes its states to disk
    files = list((place["dir"] / "prompt-cache").glob(f"*/*{SUFFIX}"))
    assert len(files) >= 2, files


def test_after_a_restart_conversations_resume_from_disk(place):
    server = start(place, "second")
    try:
        first = place["first"]
        again = ask(server.url, follow_up(1, first[1]))
        assert again["usage"]["prompt_tokens_details"]["cached_tokens"] >= \
            first[1]["usage"]["prompt_tokens"] - 8
        assert hits(server.url) >= 1
    finally:
        server.stop()


def test_torn_or_damaged_files_are_ignored_and_removed(place):
    files = list((place["dir"] / "prompt-cache").glob(f"*/*{SUFFIX}"))
    assert files
    for path in files:  # every state cut short, as by a crash in the middle of a write
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    leftover = files[0].with_name(files[0].name + ".tmp-99")
    leftover.write_bytes(b"half")
    server = start(place, "third")
    try:
        first = place["first"]
        again = ask(server.url, follow_up(2, first[2]))  # answered, from a cold prefill
        assert again["usage"]["prompt_tokens_details"]["cached_tokens"] < 50
        assert again["choices"][0]["message"]["content"]
        assert hits(server.url) == 0
        assert not leftover.exists() and not any(p.exists() for p in files)
    finally:
        server.stop()
