"""The workloads of the prompt cache, speculation and memory issue, run by bench/run.py
against ours and llama-server alike (docs/benchmarks.md):

  conversations   16 conversations, each with its own ~600-token system prompt, on 8 slots:
                  every first turn (cold), then every follow-up turn; the follow-ups' first
                  token time over the cold one's. Ours also after a restart (disk spill).
  copy            "Repeat this text exactly": decode tok/s of an answer that copies its input
  prose           a story: decode tok/s where little repeats
  cold prefill    first token time of an uncached ~1,000-token prompt
  two models      two models under a memory budget that fits one, asked in turn (ours)

Decode rates count the completion tokens the server reports (drafted tokens arrive several
per step, so counting stream chunks would be wrong for some servers).
"""

from __future__ import annotations

import json
import statistics
import time

import requests

from bench.run import MODEL, NO_EOS

PASSAGE = (
    "The lighthouse at Grey Point was built in 1871 from granite quarried on the island "
    "itself. Its lamp burned whale oil until 1903, then kerosene, and since 1952 it has been "
    "electric. The keeper's logbook records every ship that passed, the weather at each "
    "watch, and the hours the fog signal sounded. In the winter of 1899 the keeper, Thomas "
    "Hale, kept the light burning for nineteen nights without relief while a storm cut the "
    "island off from the mainland. The lens, a first-order Fresnel lens made in Paris, "
    "weighs more than four tons and floats on a bath of mercury so that a child could turn "
    "it with one hand. Today the station is automatic, and the keeper's house is a museum "
    "where visitors can read the logbooks and climb the one hundred and twelve steps to the "
    "gallery.")


def stream(base: str, messages: list, max_tokens: int, *, temperature: float = 0.0,
           ban_eos: bool = True, **extra) -> dict:
    """One streamed chat completion: first-token time, decode rate and the text."""
    # repeat_penalty 1: the same sampling on every system (ours would add the model's default
    # penalty, llama-server has none).
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "stream": True,
            "temperature": temperature, "repeat_penalty": 1.0,
            "stream_options": {"include_usage": True}, **extra}
    if ban_eos:
        body["logit_bias"] = NO_EOS
    start = time.monotonic()
    first = last = 0.0
    chunks, text, usage = 0, "", None
    with requests.post(base + "/v1/chat/completions", json=body, stream=True, timeout=900) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            choices = chunk.get("choices") or []
            piece = choices[0].get("delta", {}).get("content") if choices else None
            if piece:
                now = time.monotonic()
                first = first or now
                last = now
                chunks += 1
                text += piece
    tokens = (usage or {}).get("completion_tokens") or chunks
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return {"ttft": first - start, "decode": rate, "tokens": tokens, "text": text}


# ---------------------------------------------------------------------------- conversations


def system_prompt(c: int) -> str:
    """~600 tokens, different from the first word on, so no slot shares another's prefix."""
    return (f"Conversation {c}: you are the assistant of lighthouse keeper number {c}. " +
            f"Keep logbook {c} tidy, note every ship and the weather, answer briefly. " * 30)


def conversations(base: str, n: int = 16, answer_tokens: int = 16) -> dict:
    histories = [[{"role": "system", "content": system_prompt(c)},
                  {"role": "user", "content": f"What is logbook {c} for?"}] for c in range(n)]
    cold = []
    for h in histories:
        s = stream(base, h, answer_tokens)
        cold.append(s["ttft"])
        h.append({"role": "assistant", "content": s["text"]})
        h.append({"role": "user", "content": "And what did you write in it last night?"})
    follow = [stream(base, h, 4)["ttft"] for h in histories]
    return {"cold": statistics.median(cold), "follow_up": statistics.median(follow),
            "ratio": statistics.median(follow) / statistics.median(cold),
            "histories": histories}


def follow_ups_again(base: str, histories: list) -> dict:
    """The same follow-up turns once more (after a restart: from the disk spill)."""
    ttfts = [stream(base, h, 4)["ttft"] for h in histories]
    return {"follow_up": statistics.median(ttfts)}


# ---------------------------------------------------------------------------- decode


def copy_messages() -> list:
    return [{"role": "user", "content": f"Repeat this text exactly:\n\n{PASSAGE}"}]


def copy_heavy(base: str, runs: int, tokens: int = 200, **extra) -> dict:
    stream(base, copy_messages(), 8, **extra)  # warm (and cache the prompt)
    out = [stream(base, copy_messages(), tokens, **extra) for _ in range(runs)]
    return {"decode": statistics.median(s["decode"] for s in out), "text": out[0]["text"]}


def prose(base: str, runs: int, tokens: int = 128, **extra) -> dict:
    messages = [{"role": "user", "content": "Tell me story number 0 about a lighthouse."}]
    stream(base, messages, 8, **extra)
    out = [stream(base, messages, tokens, **extra) for _ in range(runs)]
    return {"decode": statistics.median(s["decode"] for s in out), "text": out[0]["text"]}


def streams(base: str, n: int, tokens: int = 128, **extra) -> float:
    """Aggregate tok/s of `n` concurrent prose streams (all tokens / wall time)."""
    import threading

    results: list = [None] * n

    def run(i: int) -> None:
        results[i] = stream(base, [{"role": "user", "content":
                                    f"Tell me story number {i} about a lighthouse."}],
                            tokens, **extra)

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r["tokens"] for r in results) / (time.monotonic() - started)


def cold_prefill(base: str, runs: int = 3) -> float:
    """First-token time of ~1,000 uncached prompt tokens (a new first word each run)."""
    ttfts = []
    for r in range(runs):
        words = " ".join(f"w{r}x{i}" for i in range(330))  # ~1,000 tokens
        ttfts.append(stream(base, [{"role": "user", "content": f"Run {r}-{time.time()}: "
                                    + words}], 2)["ttft"])
    return statistics.median(ttfts)


# ---------------------------------------------------------------------------- two models


def two_models(base: str, models: list[str], rounds: int, rss_mib) -> dict:
    """Ask each model in turn; a budget that fits one swaps them every time."""
    swaps, errors, peak, seconds = 0, [], 0.0, []
    for i in range(rounds * len(models)):
        model = models[i % len(models)]
        started = time.monotonic()
        r = requests.post(base + "/v1/chat/completions", timeout=300, json={
            "model": model, "max_tokens": 4,
            "messages": [{"role": "user", "content": "Say hello."}]})
        seconds.append(time.monotonic() - started)
        if r.status_code != 200:
            errors.append(f"{model}: {r.status_code} {r.text[:200]}")
        ps = requests.get(base + "/engines/ps", timeout=10).json()
        swaps += len(ps) == 1 and i > 0
        peak = max(peak, rss_mib())
    return {"requests": len(seconds), "swaps": swaps, "errors": errors, "peak_rss_mib": peak,
            "request_seconds_median": statistics.median(seconds)}
