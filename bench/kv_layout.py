"""A KV cache per slot (the default) against one unified cache for all slots, in one run.

    python -m bench.kv_layout [--rounds 2]

Starts our server once per layout and round (alternating, never two at once) and measures:
  cold prefill   first-token time of a new 1,000-token prompt while 7 other slots hold stale
                 1,000-token prefixes (median of 3)
  8 streams      aggregate tok/s of 8 concurrent 128-token answers
  shared prompt  wall time of 8 users asking one after another behind one 600-token system
                 prompt (each copies the cached prefix from another slot)
and prints medians over the rounds with split/unified ratios. In a unified cache every
sequence's attention spans every slot's cached cells; per slot, it spans only its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time

import requests

from bench.run import MODEL, NO_EOS, ServerProc, free_port

WORDS = ("lighthouse river violin glacier beehive comet bakery chess volcano library "
         "sailboat desert").split()


def filler(seed: int, tokens: int) -> str:
    """About `tokens` tokens of text no other seed shares a prefix with."""
    return " ".join(f"{WORDS[(seed * 7 + i * 3) % len(WORDS)]}{(seed * 131 + i) % 97}"
                    for i in range(tokens // 3))


def ask(url: str, prompt: str, max_tokens: int, system: str | None = None) -> tuple[float, int]:
    """Seconds for one chat completion, and the tokens it generated."""
    messages = ([{"role": "system", "content": system}] if system else [])
    messages.append({"role": "user", "content": prompt})
    started = time.monotonic()
    r = requests.post(f"{url}/engines/v1/chat/completions", timeout=600, json={
        "model": MODEL, "max_tokens": max_tokens, "logit_bias": NO_EOS, "messages": messages})
    r.raise_for_status()
    return time.monotonic() - started, r.json()["usage"]["completion_tokens"]


def together(jobs) -> list:
    results: list = []
    threads = [threading.Thread(target=lambda j=job: results.append(j())) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def measure(unified: bool, round_: int) -> tuple[float, float, float]:
    store = tempfile.mkdtemp(prefix="bench-kv-")
    port = free_port()
    server = ServerProc("ours", [sys.executable, "-m", "server.cli", "serve", "--host",
                                 "127.0.0.1", "--port", str(port), "--models-dir", store],
                        port, "/health", env={"DMR_KV_UNIFIED": "1" if unified else "0"})
    try:
        url = server.base
        ask(url, "hi", 1)
        seed = 100 + 10 * round_
        together([lambda i=i: ask(url, filler(seed + i, 1000), 1) for i in range(7)])
        cold = statistics.median(ask(url, filler(500 + seed + k, 1000), 1)[0] for k in range(3))
        started = time.monotonic()
        answers = together([lambda i=i: ask(url, f"Story {i} about {WORDS[i]}", 128)
                            for i in range(8)])
        streams = sum(tokens for _, tokens in answers) / (time.monotonic() - started)
        system = filler(900 + round_, 600)
        started = time.monotonic()
        for i in range(8):
            ask(url, f"Question {i}?", 4, system)
        shared = time.monotonic() - started
    finally:
        server.stop()
    return cold, streams, shared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    runs: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for unified in (False, True):
            runs[unified].append(measure(unified, round_))
            print(f"round {round_} {'unified' if unified else 'per slot'}: "
                  + ", ".join(f"{x:.2f}" for x in runs[unified][-1]), flush=True)
    med = {u: [statistics.median(r[k] for r in runs[u]) for k in range(3)] for u in runs}
    split, unified = med[False], med[True]
    print("\n| | per slot | unified | per slot / unified |\n|---|---|---|---|")
    print(f"| cold 1,000-token prefill beside 7 stale caches (s) | {split[0]:.2f} | "
          f"{unified[0]:.2f} | {split[0] / unified[0]:.2f} |")
    print(f"| 8 streams (tok/s) | {split[1]:.1f} | {unified[1]:.1f} | "
          f"{split[1] / unified[1]:.2f} |")
    print(f"| 8 users behind one 600-token system prompt (s) | {split[2]:.2f} | "
          f"{unified[2]:.2f} | {split[2] / unified[2]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
