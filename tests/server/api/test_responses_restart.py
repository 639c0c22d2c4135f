"""Stored responses survive a restart: a `previous_response_id` chain continues on a new
server process, the store keeps its bounds across it (oldest evicted), `store: false` never
reaches the disk, and truncation drops the oldest turns of a chain that outgrew the context.

A server of our own (not the shared one) on a models dir we control, with a 512-token context
and a store bounded to a few responses, so that every bound is reached quickly.
"""

from __future__ import annotations

import json

import openai
import pytest
import requests

from tests.conftest import MODEL, ServerProcess

MAX_COUNT = 6
GREEDY = {"temperature": 0, "max_output_tokens": 6}


class Restartable:
    def __init__(self, base):
        self.base = base
        self.models = base / "models"
        self.runs = 0
        self.server: ServerProcess | None = None
        self.start()

    def start(self) -> None:
        self.runs += 1
        self.server = ServerProcess(
            self.models, self.base / f"server-{self.runs}.log",
            env={"DMR_THREADS": "1", "DMR_CONTEXT_SIZE": "512",
                 "DMR_RESPONSES_MAX_COUNT": str(MAX_COUNT)})
        self.server.wait_ready()

    def restart(self) -> None:
        self.server.stop()
        self.start()

    @property
    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.server.url + "/v1", api_key="unused", max_retries=0)

    def files(self) -> set[str]:
        return {p.stem for p in (self.models / "responses").glob("*.json")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Restartable(tmp_path_factory.mktemp("responses-restart"))
    yield server
    server.server.stop()


@pytest.mark.timeout(300)
def test_a_chain_survives_a_restart(server):
    client = server.client
    first = client.responses.create(model=MODEL, input="My name is Ada.", **GREEDY)
    second = client.responses.create(model=MODEL, input="I live in Paris.",
                                     previous_response_id=first.id, **GREEDY)
    hidden = client.responses.create(model=MODEL, input="Secret.", store=False, **GREEDY)
    assert {first.id, second.id} <= server.files() and hidden.id not in server.files()
    before = client.responses.input_tokens.count(model=MODEL, input="Where do I live?",
                                                 previous_response_id=second.id).input_tokens

    server.restart()
    client = server.client
    assert client.responses.retrieve(second.id).model_dump() == second.model_dump()
    assert client.responses.input_items.list(first.id).data[0].content[0].text == \
        "My name is Ada."
    third = client.responses.create(model=MODEL, input="Where do I live?",
                                    previous_response_id=second.id, **GREEDY)
    assert third.usage.input_tokens == before  # the whole chain is in the prompt again
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(hidden.id)


@pytest.mark.timeout(300)
def test_bounds_hold_across_restarts_and_evicted_chains_fail_clearly(server):
    client = server.client
    ids = [client.responses.create(model=MODEL, input=f"Number {i}.", **GREEDY).id
           for i in range(MAX_COUNT + 2)]
    assert len(server.files()) == MAX_COUNT
    server.restart()
    client = server.client
    kept = [rid for rid in ids
            if requests.get(f"{server.server.url}/v1/responses/{rid}", timeout=10).ok]
    assert kept == ids[2:]
    oldest = kept[0]
    r = client.responses.create(model=MODEL, input="Next.", previous_response_id=oldest,
                                **GREEDY)
    assert r.previous_response_id == oldest
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model=MODEL, input="Next.", previous_response_id=ids[0])
    assert info.value.body["code"] == "previous_response_not_found"


@pytest.mark.timeout(300)
def test_background_response_cut_by_a_restart_reads_as_failed(server):
    client = server.client
    record = server.models / "responses" / "resp_restarted.json"
    first = client.responses.create(model=MODEL, input="Hi", **GREEDY)
    stored = json.loads((server.models / "responses" / f"{first.id}.json").read_text())
    stored["response"].update(id="resp_restarted", status="in_progress", background=True)
    record.write_text(json.dumps(stored))
    server.restart()
    client = server.client
    got = client.responses.retrieve("resp_restarted")
    assert got.status == "failed" and "restarted" in got.error.message
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, input="x", previous_response_id="resp_restarted")


@pytest.mark.timeout(300)
def test_truncation_auto_drops_the_oldest_turns(server):
    client = server.client
    long_turns = []
    for i in range(6):
        long_turns += [{"role": "user", "content": f"Fact {i}: " + "the sky is blue " * 20},
                       {"role": "assistant", "content": "Noted."}]
    long_turns.append({"role": "user", "content": "Summarise."})
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, input=long_turns, **GREEDY)
    assert info.value.body["code"] == "context_length_exceeded"
    r = client.responses.create(model=MODEL, input=long_turns, truncation="auto", **GREEDY)
    assert r.truncation == "auto" and r.usage.input_tokens + 6 <= 512
    count = client.responses.input_tokens.count(model=MODEL, input=long_turns,
                                                truncation="auto")
    assert count.input_tokens == r.usage.input_tokens
