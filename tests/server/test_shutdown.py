"""SIGTERM drains: answers in flight (streamed or not, in any dialect) finish, new connections
are refused at once, and the server exits cleanly afterwards. (A connection still waiting in
the listen backlog, never accepted, is reset: it was not in flight.)"""

from __future__ import annotations

import os
import signal
import threading
import time

import anthropic
import openai
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODEL, NO_EOS, ServerProcess

STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def _wait_generating(url: str, n: int, timeout: float = 60) -> None:
    """Until the server reports `n` sequences generating (its /metrics gauge)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for family in text_string_to_metric_families(requests.get(f"{url}/metrics").text):
            if family.name == "llamacpp:requests_processing" and family.samples[0].value >= n:
                return
        time.sleep(0.05)
    raise AssertionError(f"{n} requests never ran at once")


def test_sigterm_finishes_streams_in_flight_then_exits(tmp_path):
    proc = ServerProcess(tmp_path / "models", tmp_path / "server.log",
                         env={"DMR_GRACEFUL_TIMEOUT": "60"})
    try:
        proc.wait_ready()
        url = proc.url
        oai = openai.OpenAI(base_url=f"{url}/engines/v1", api_key="none", max_retries=0)
        oai.chat.completions.create(model=MODEL, messages=STORY, max_tokens=1)  # load it
        claude = anthropic.Anthropic(base_url=f"{url}/anthropic", api_key="none",
                                     max_retries=0)
        results: dict[str, object] = {}
        first_chunk = threading.Event()

        def openai_stream() -> None:
            chunks = []
            for chunk in oai.chat.completions.create(model=MODEL, messages=STORY, stream=True,
                                                     max_tokens=120, logit_bias=NO_EOS):
                chunks.append(chunk)
                first_chunk.set()
            results["openai"] = chunks

        def anthropic_stream() -> None:
            with claude.messages.stream(model=MODEL, max_tokens=120, messages=STORY,
                                        extra_body={"logit_bias": NO_EOS}) as stream:
                results["anthropic"] = stream.get_final_message()

        def ollama_whole() -> None:
            results["ollama"] = requests.post(f"{url}/api/chat", json={
                "model": MODEL, "messages": STORY, "stream": False,
                "options": {"num_predict": 120}})

        threads = [threading.Thread(target=f)
                   for f in (openai_stream, anthropic_stream, ollama_whole)]
        for t in threads:
            t.start()
        assert first_chunk.wait(60)
        _wait_generating(url, 3)  # all three are in flight, not waiting to be accepted
        os.kill(proc.proc.pid, signal.SIGTERM)
        time.sleep(0.5)
        try:
            requests.get(f"{url}/health", timeout=5)
            refused = False
        except requests.ConnectionError:
            refused = True
        assert refused, "a new connection was accepted after SIGTERM"
        for t in threads:
            t.join(120)

        chunks = results["openai"]
        assert chunks[-1].choices[0].finish_reason == "length"
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 50
        message = results["anthropic"]
        assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 120
        reply = results["ollama"]
        assert reply.status_code == 200 and reply.json()["done"] is True
        assert reply.json()["eval_count"] > 0
        assert proc.proc.wait(60) == 0
        assert "Handling signal: term" in proc.log()
    finally:
        proc.stop()
