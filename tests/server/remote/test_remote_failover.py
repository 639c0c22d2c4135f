"""A remote engine keeps serving when one of its two real upstreams is killed (SIGKILL, no
drain), and takes it back when it returns.

Answers that had not started when the node died are retried on the other replica, a whole
(non-streamed) answer included; a stream already under way cannot be hidden and ends with
OpenAI's in-band error event.
"""

from __future__ import annotations

import threading
import time

import openai
import pytest

from tests.conftest import MODEL, NO_EOS

from .conftest import upstream_state

HELLO = [{"role": "user", "content": "Tell me a story."}]


@pytest.fixture(scope="module")
def front(fleet):
    return fleet.start_front()


@pytest.fixture(scope="module")
def client(front) -> openai.OpenAI:
    return openai.OpenAI(base_url=front.url + "/engines/vllm/v1", api_key="unused",
                         max_retries=0, timeout=120)


def _wait_for(predicate, timeout: float = 60) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)
    return time.monotonic() - started


def _busy_upstream(front_url: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = [url for url, up in upstream_state(front_url).items() if up["in_flight"]]
        if busy:
            return busy[0]
        time.sleep(0.02)
    raise AssertionError("no upstream got the request")


def _mixed(client: openai.OpenAI, i: int) -> str:
    if i % 3 == 0:
        chunks = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4,
                                                stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if i % 3 == 1:
        return client.chat.completions.create(model=MODEL, messages=HELLO,
                                              max_tokens=4).choices[0].message.content
    return str(len(client.embeddings.create(model=MODEL, input="hello").data[0].embedding))


def test_a_whole_answer_in_flight_on_a_dying_node_is_retried(fleet, front, client):
    result: dict = {}

    def ask():
        try:
            result["answer"] = client.chat.completions.create(
                model=MODEL, messages=HELLO, max_tokens=60, logit_bias=NO_EOS)
        except Exception as exc:  # reported below
            result["error"] = exc

    worker = threading.Thread(target=ask)
    worker.start()
    victim_url = _busy_upstream(front.url)
    victim = next(i for i, u in enumerate(fleet.upstreams) if victim_url.startswith(u.url))
    time.sleep(0.3)  # generating by now
    fleet.upstreams[victim].kill()
    worker.join(120)
    assert "error" not in result, result.get("error")
    assert result["answer"].usage.completion_tokens == 60
    state = upstream_state(front.url)[victim_url]
    assert state["state"] != "up" and state["retried_requests"] >= 1

    # Every request after the death is served by the other replica.
    for i in range(9):
        assert _mixed(client, i)

    # Back on its port: the health checks take it in again, and it gets traffic.
    before = state["requests"]
    fleet.start_upstream(victim).wait_ready()
    _wait_for(lambda: upstream_state(front.url)[victim_url]["state"] == "up", timeout=30)
    for i in range(6):
        assert _mixed(client, i)
    assert upstream_state(front.url)[victim_url]["requests"] > before


def test_a_stream_cut_by_a_dying_node_ends_with_an_in_band_error(fleet, front, client):
    _wait_for(lambda: all(u["state"] == "up" for u in upstream_state(front.url).values()))
    stream = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=400,
                                            logit_bias=NO_EOS, stream=True)
    first = next(iter(stream))
    assert first.choices
    victim_url = _busy_upstream(front.url)
    victim = next(i for i, u in enumerate(fleet.upstreams) if victim_url.startswith(u.url))
    fleet.upstreams[victim].kill()
    with pytest.raises(openai.APIError, match="middle of its answer"):
        for _ in stream:
            pass
    assert client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3).choices
    fleet.start_upstream(victim).wait_ready()
