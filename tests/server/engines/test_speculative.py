"""Speculative (prompt lookup) decoding with the real model, on the shared server: drafts
change how fast an answer comes, never what it says (engines/llamacpp/speculative.py)."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import MODEL

PASSAGE = ("The lighthouse keeper climbed the one hundred and twelve stairs every evening at "
           "dusk, lit the great lamp, wound the clockwork that turned the lens, and wrote in "
           "his logbook the names of the ships that passed in the night.")
COPY = [{"role": "user", "content": f"Repeat this text exactly:\n\n{PASSAGE}"}]


def metric(url: str, name: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(f"llamacpp:{name}"))


def chat(url: str, **extra) -> dict:
    r = requests.post(url + "/v1/chat/completions", timeout=300, json={
        "model": MODEL, "messages": COPY, "max_tokens": 48, **extra})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 0.9, "seed": 7}])
def test_the_same_answer_with_and_without_drafts(server_url, sampling):
    # Temperature 0, and seeded sampling too: every kept token is a sample of the target
    # distribution, drawn with the same random numbers in the same order.
    without = chat(server_url, speculative=False, **sampling)
    drafted_before = metric(server_url, "draft_tokens_total")
    forced = chat(server_url, speculative=True, **sampling)
    assert metric(server_url, "draft_tokens_total") > drafted_before  # drafts were verified
    default = chat(server_url, **sampling)
    text = without["choices"][0]["message"]["content"]
    assert forced["choices"][0]["message"]["content"] == text
    assert default["choices"][0]["message"]["content"] == text
    assert forced["usage"]["completion_tokens"] == without["usage"]["completion_tokens"]


def test_copying_accepts_most_drafts(server_url):
    # Forced on: whether `auto` drafts depends on what steps cost on this machine right now.
    before = metric(server_url, "draft_tokens_total"), metric(server_url, "draft_accepted_tokens_total")
    # No repetition penalty (the model's defaults have one): a copy repeats on purpose.
    reply = chat(server_url, temperature=0, speculative=True, repeat_penalty=1.0)
    assert PASSAGE[:40] in reply["choices"][0]["message"]["content"]
    drafted = metric(server_url, "draft_tokens_total") - before[0]
    accepted = metric(server_url, "draft_accepted_tokens_total") - before[1]
    assert drafted > 0 and accepted / drafted > 0.5, (drafted, accepted)


def test_opt_out_in_every_dialect(server_url):
    before = metric(server_url, "draft_tokens_total")
    r = requests.post(server_url + "/api/chat", timeout=300, json={
        "model": MODEL, "messages": COPY, "stream": False,
        "options": {"num_predict": 24, "temperature": 0, "speculative": False}})
    assert r.status_code == 200 and r.json()["message"]["content"], r.text
    r = requests.post(server_url + "/v1/messages", timeout=300, json={
        "model": MODEL, "messages": COPY, "max_tokens": 24, "temperature": 0,
        "speculative": False})
    assert r.status_code == 200, r.text
    chat(server_url, temperature=0, speculative=False)
    assert metric(server_url, "draft_tokens_total") == before
    bad = requests.post(server_url + "/v1/chat/completions", timeout=30, json={
        "model": MODEL, "messages": COPY, "speculative": "yes"})
    assert bad.status_code == 400 and "speculative" in bad.json()["error"]["message"]


def test_n_choices_prefill_their_prompt_once(server_url):
    # A prompt longer than one batch (512) takes several steps to prefill; the other
    # choices wait for it and copy its cells instead of prefilling it again.
    long = [{"role": "user", "content": "Remember the logbook. " * 400 + "Now name a ship."}]
    before = metric(server_url, "prompt_tokens_total")
    r = requests.post(server_url + "/v1/chat/completions", timeout=300, json={
        "model": MODEL, "messages": long, "max_tokens": 4, "n": 3, "temperature": 0.8,
        "seed": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["choices"]) == 3 and all(c["message"]["content"] for c in body["choices"])
    decoded = metric(server_url, "prompt_tokens_total") - before
    assert body["usage"]["prompt_tokens"] > 1500
    assert decoded < 1.2 * body["usage"]["prompt_tokens"], decoded
