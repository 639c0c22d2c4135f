"""Past one machine, measured on loopback: what a remote engine costs per token, and what a
node killed in the middle of a run costs through a remote engine and through the LiteLLM proxy.

    python -m bench.remote overhead [--reps 12] [--tokens 64]
    python -m bench.remote failover --path engine|proxy [--requests 120] [--clients 4]
    python -m bench.remote all [--json PATH]

overhead: one upstream of ours and (if built, see bench/fleet.py) llama.cpp's llama-server,
each streamed directly and through a front server's remote engine, alternating, same run.
failover: two of our servers behind one name; after `--kill-at` answers one of them is
SIGKILLed (no drain), after `--restart-at` it starts again on its port; every answer is
checked. Recovery: from the restarted node being ready to its first served request.
Every server has one llama.cpp thread. Results and what they mean: docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anthropic
import openai
import requests

from bench import fleet
from server.store.bundled import bundled_gguf

MODEL = "ai/smollm2"
NO_EOS = {"0": -100, "2": -100}
PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]


# ---------------------------------------------------------------------------- overhead


def timed_stream(base: str, model: str, tokens: int) -> tuple[float, float, int]:
    """(seconds per token over the whole request, seconds per token after the first, n)."""
    body = {"model": model, "messages": PROMPT, "max_tokens": tokens, "temperature": 0,
            "seed": 1, "stream": True, "logit_bias": NO_EOS}
    started = time.perf_counter()
    first = last = 0.0
    n = 0
    with requests.post(base + "/chat/completions", json=body, stream=True, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                last = time.perf_counter()
                first = first or last
                n += 1
    return (last - started) / n, (last - first) / max(1, n - 1), n


def overhead(reps: int, tokens: int) -> dict:
    work = fleet.workdir()
    upstream = fleet.ours("upstream", work)
    upstream.wait_ready()
    ls = fleet.llama_server(work, bundled_gguf(), "smollm2")
    engines = f"  dmr:\n    upstreams: ['{upstream.url}/engines/v1']\n"
    pairs = {"our server": (f"{upstream.url}/engines/v1", "dmr", MODEL)}
    if ls is not None:
        ls.wait_ready()
        engines += f"  edge:\n    upstreams: ['{ls.url}/v1']\n"
        pairs["llama-server"] = (f"{ls.url}/v1", "edge", "smollm2")
    front = fleet.front(work, engines)
    front.wait_ready()
    out: dict = {"tokens": tokens, "reps": reps}
    try:
        for label, (direct, engine, model) in pairs.items():
            via = f"{front.url}/engines/{engine}/v1"
            for base in (direct, via):  # warm up: model load, connections, prefix cache
                timed_stream(base, model, tokens)
            samples: dict[str, list] = {"direct": [], "remote engine": []}
            front_cpu = 0.0
            for r in range(reps):
                order = [("direct", direct), ("remote engine", via)]
                for name, base in order if r % 2 == 0 else order[::-1]:
                    cpu = front.cpu_seconds()
                    samples[name].append(timed_stream(base, model, tokens))
                    if name == "remote engine":
                        front_cpu += front.cpu_seconds() - cpu
            row = {}
            for name, runs in samples.items():
                per_token = sorted(s[0] for s in runs)
                row[name] = {"ms_per_token": statistics.median(per_token) * 1000,
                             "ms_per_token_p25_p75": [
                                 round(per_token[len(runs) // 4] * 1000, 2),
                                 round(per_token[(3 * len(runs)) // 4] * 1000, 2)],
                             "ms_per_token_after_first": statistics.median(
                                 s[1] for s in runs) * 1000,
                             "tokens": min(s[2] for s in runs)}
            row["overhead_ms_per_token"] = (row["remote engine"]["ms_per_token"]
                                            - row["direct"]["ms_per_token"])
            # What forwarding costs the machine: the front server's own CPU per token relayed
            # (robust on a busy machine, where wall-clock differences drown in noise).
            row["front_cpu_ms_per_token"] = front_cpu / (reps * tokens) * 1000
            row["overhead_ms_per_token_after_first"] = (
                row["remote engine"]["ms_per_token_after_first"]
                - row["direct"]["ms_per_token_after_first"])
            out[label] = row
    finally:
        for proc in (front, ls, upstream):
            if proc is not None:
                proc.stop()
        fleet.clean(work)
    return out


# ---------------------------------------------------------------------------- failover


@dataclass
class Outcome:
    kind: str
    ok: bool
    seconds: float
    error: str = ""


@dataclass
class Failover:
    path: str
    signal: str = "SIGKILL"
    requests: int = 0
    failed: int = 0
    failures: list[dict] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    killed_at_s: float = 0.0
    detected_down_after_s: float | None = None  # remote engine: victim marked not "up"
    restart_ready_at_s: float = 0.0
    marked_up_after_restart_s: float | None = None  # remote engine: victim "up" again
    served_after_restart_s: float | None = None  # first request answered by the victim
    duration_s: float = 0.0


def _text(value: str | None) -> str:
    if not value or not value.strip():
        raise AssertionError("empty answer")
    return value


def engine_kinds(front_url: str) -> dict[str, Callable[[int], None]]:
    oa = openai.OpenAI(base_url=f"{front_url}/engines/vllm/v1", api_key="x", max_retries=0,
                       timeout=120)
    an = anthropic.Anthropic(base_url=f"{front_url}/engines/vllm", api_key="x", max_retries=0,
                             timeout=120)

    def chat(i):
        _text(oa.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=12,
                                         seed=i).choices[0].message.content)

    def chat_stream(i):
        chunks = oa.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=12,
                                            seed=i, stream=True)
        _text("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))

    def completion(i):
        _text(oa.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8,
                                    seed=i).choices[0].text)

    def embeddings(i):
        assert len(oa.embeddings.create(model=MODEL, input=f"case {i}").data[0].embedding) > 100

    def messages(i):
        _text(an.messages.create(model=MODEL, max_tokens=12, messages=PROMPT).content[0].text)

    def messages_stream(i):
        with an.messages.stream(model=MODEL, max_tokens=12, messages=PROMPT) as stream:
            _text("".join(stream.text_stream))

    def ollama_chat(i):
        r = requests.post(f"{front_url}/api/chat", timeout=120, json={
            "model": MODEL, "messages": PROMPT, "stream": False, "options": {"num_predict": 8}})
        r.raise_for_status()
        _text(r.json()["message"]["content"])

    return {"openai chat": chat, "openai chat stream": chat_stream,
            "openai completion": completion, "openai embeddings": embeddings,
            "anthropic messages": messages, "anthropic stream": messages_stream,
            "ollama chat": ollama_chat}


def proxy_kinds(proxy_url: str, key: str) -> dict[str, Callable[[int], None]]:
    oa = openai.OpenAI(base_url=proxy_url, api_key=key, max_retries=0, timeout=120)
    an = anthropic.Anthropic(base_url=proxy_url, api_key=key, max_retries=0, timeout=120)

    def chat(i):
        _text(oa.chat.completions.create(model="fleet", messages=PROMPT, max_tokens=12,
                                         seed=i).choices[0].message.content)

    def chat_stream(i):
        chunks = oa.chat.completions.create(model="fleet", messages=PROMPT, max_tokens=12,
                                            seed=i, stream=True)
        _text("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))

    def embeddings(i):
        assert len(oa.embeddings.create(model="fleet", input=f"case {i}").data[0].embedding) > 100

    def messages(i):
        _text(an.messages.create(model="fleet", max_tokens=12, messages=PROMPT).content[0].text)

    return {"openai chat": chat, "openai chat stream": chat_stream,
            "openai embeddings": embeddings, "anthropic messages": messages}


def _served(proc: fleet.Proc) -> bool:
    """A request reached it: its model got loaded (health checks load nothing)."""
    try:
        return bool(requests.get(proc.url + "/engines/ps", timeout=2).json())
    except requests.RequestException:
        return False


def _victim_state(front_url: str, victim_url: str) -> str | None:
    try:
        status = requests.get(front_url + "/engines/remote", timeout=2).json()
    except requests.RequestException:
        return None
    return next((u["state"] for u in status["vllm"]["upstreams"]
                 if u["url"].startswith(victim_url)), None)


def failover(path: str, total: int, clients: int, kill_at: int, restart_at: int,
             graceful: bool = False) -> Failover:
    """`graceful`: SIGTERM (the node drains its requests, as in a rolling restart) instead of
    SIGKILL (a crash)."""
    work = fleet.workdir()
    nodes = [fleet.ours(f"node{i}", work) for i in range(2)]
    for node in nodes:
        node.wait_ready()
    others: list[fleet.Proc] = []
    if path == "engine":
        proc = fleet.front(work, "  vllm:\n    upstreams: [" + ", ".join(
            f"'{n.url}/engines/v1'" for n in nodes) + "]\n    health_interval: 2s\n")
        proc.wait_ready()
        kinds = engine_kinds(proc.url)
    else:
        proc, key = fleet.litellm_proxy(work, fleet.fleet_config(nodes[0].url, nodes[1].url))
        proc.wait_ready()
        kinds = proxy_kinds(proc.url, key)
    others.append(proc)
    names = list(kinds)
    victim = nodes[1]
    result = Failover(path, signal="SIGTERM" if graceful else "SIGKILL")
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    done = threading.Event()
    started = time.monotonic()
    events: dict[str, float] = {}

    def one(i: int) -> None:
        kind = names[i % len(names)]
        t0 = time.monotonic()
        try:
            kinds[kind](i)
            outcome = Outcome(kind, True, time.monotonic() - t0)
        except Exception as exc:  # every failure is counted and described
            outcome = Outcome(kind, False, time.monotonic() - t0, f"{type(exc).__name__}: {exc}")
        with lock:
            outcomes.append(outcome)
            count = len(outcomes)
        if count == kill_at:
            events["kill"] = time.monotonic()
            victim.stop() if graceful else victim.kill()
        elif count == restart_at:
            victim.start()
            victim.wait_ready()
            events["ready"] = time.monotonic()

    def watch() -> None:
        while not done.is_set():
            now = time.monotonic()
            if path == "engine" and "kill" in events and "down" not in events:
                if _victim_state(proc.url, victim.url) not in ("up", None):
                    events["down"] = now
            if "ready" in events:
                if path == "engine" and "up" not in events and \
                        _victim_state(proc.url, victim.url) == "up":
                    events["up"] = now
                if "served" not in events and _served(victim):
                    events["served"] = now
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, range(total)))
            i = total  # keep the traffic going until the restarted node serves again
            deadline = time.monotonic() + 150
            while "served" not in events and time.monotonic() < deadline:
                list(pool.map(one, range(i, i + clients)))
                i += clients
    finally:
        done.set()
        watcher.join(5)
        for p in others + nodes:
            p.stop()
        fleet.clean(work)
    result.duration_s = time.monotonic() - started
    result.requests = len(outcomes)
    result.failures = [asdict(o) for o in outcomes if not o.ok]
    result.failed = len(result.failures)
    for o in outcomes:
        result.kinds[o.kind] = result.kinds.get(o.kind, 0) + 1
    result.killed_at_s = events["kill"] - started
    result.restart_ready_at_s = events["ready"] - started
    if "down" in events:
        result.detected_down_after_s = events["down"] - events["kill"]
    if "up" in events:
        result.marked_up_after_restart_s = events["up"] - events["ready"]
    if "served" in events:
        result.served_after_restart_s = events["served"] - events["ready"]
    return result


# ---------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["overhead", "failover", "all"])
    parser.add_argument("--path", choices=["engine", "proxy"], default="engine")
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kill-at", type=int, default=30)
    parser.add_argument("--restart-at", type=int, default=70)
    parser.add_argument("--graceful", action="store_true",
                        help="stop the node with SIGTERM (it drains) instead of SIGKILL")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    report: dict = {}
    if args.what in ("overhead", "all"):
        report["overhead"] = overhead(args.reps, args.tokens)
        print(json.dumps(report["overhead"], indent=2), flush=True)
    paths = ["engine", "proxy"] if args.what == "all" else [args.path]
    if args.what in ("failover", "all"):
        for path in paths:
            run = failover(path, args.requests, args.clients, args.kill_at, args.restart_at,
                           args.graceful)
            report[f"failover {path} {run.signal}"] = asdict(run)
            print(json.dumps(asdict(run), indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = sum(r.get("failed", 0) for k, r in report.items() if k.startswith("failover"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
