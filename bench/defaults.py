"""Does the first answer end by itself? 20 everyday prompts, no options, every dialect.

    python -m bench.defaults [--url http://127.0.0.1:12434] [--cap 1024] [--only openai,...]

Sends each prompt as a new user would: `dmr run MODEL "prompt"`, and the plain chat call of
each dialect (OpenAI chat completions, Anthropic messages with a generous max_tokens since
the API requires one, Ollama /api/chat), with no sampling options at all. Prints, per way of
asking, how many answers ended by themselves (an end-of-turn, not a length limit) and their
median length in tokens. An answer still going after `--cap` tokens is stopped there and
counted as not ended (a measurement ceiling, so one run finishes in minutes). Model defaults
(issue 13) are what changes these figures; see docs/models.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

PROMPTS = [
    "Say hello in French.",
    "What is the capital of Japan?",
    "Give me three tips for sleeping better.",
    "Write a haiku about autumn.",
    "Translate 'thank you' into Spanish.",
    "What is 12 times 7?",
    "Suggest a name for a pet goldfish.",
    "Explain what a noun is in one sentence.",
    "What should I cook for dinner tonight?",
    "How many days are in a leap year?",
    "Write a short birthday message for my friend Anna.",
    "What is the boiling point of water in Celsius?",
    "List the primary colors.",
    "Give me a synonym for 'happy'.",
    "What is photosynthesis?",
    "Recommend a good book for a long flight.",
    "How do I make a cup of tea?",
    "What's the opposite of 'cold'?",
    "Tell me a fun fact about octopuses.",
    "Summarize the plot of Cinderella in two sentences.",
]


@dataclass
class Answer:
    ended: bool
    tokens: int
    text: str


def _sse(response: requests.Response):
    for raw in response.iter_lines():
        line = raw.decode("utf-8", errors="replace")
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            yield json.loads(line[5:])


def openai_chat(url: str, model: str, prompt: str, cap: int) -> Answer:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}],
            "stream_options": {"include_usage": True}}
    text, n, ended = "", 0, False
    with requests.post(f"{url}/engines/v1/chat/completions", json=body, stream=True,
                       timeout=600) as response:
        for chunk in _sse(response):
            for choice in chunk.get("choices") or []:
                text += choice["delta"].get("content") or ""
                n += 1 if choice["delta"].get("content") else 0
                ended = ended or choice.get("finish_reason") == "stop"
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
            if n >= cap:
                return Answer(False, cap, text)
    return Answer(ended, n, text)


def anthropic_messages(url: str, model: str, prompt: str, cap: int) -> Answer:
    body = {"model": model, "stream": True, "max_tokens": 4096,
            "messages": [{"role": "user", "content": prompt}]}
    text, n, ended = "", 0, False
    with requests.post(f"{url}/v1/messages", json=body, stream=True, timeout=600) as response:
        for event in _sse(response):
            if event.get("type") == "content_block_delta":
                text += event["delta"].get("text") or ""
                n += 1
            elif event.get("type") == "message_delta":
                ended = event["delta"].get("stop_reason") == "end_turn"
                n = event["usage"]["output_tokens"]
            if n >= cap:
                return Answer(False, cap, text)
    return Answer(ended, n, text)


def ollama_chat(url: str, model: str, prompt: str, cap: int) -> Answer:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    text, n, ended = "", 0, False
    with requests.post(f"{url}/api/chat", json=body, stream=True, timeout=600) as response:
        for raw in response.iter_lines():
            obj = json.loads(raw)
            text += (obj.get("message") or {}).get("content") or ""
            n += 1
            if obj.get("done"):
                ended = obj.get("done_reason") == "stop"
                n = obj.get("eval_count", n)
            if n >= cap:
                return Answer(False, cap, text)
    return Answer(ended, n, text)


def dmr_run(url: str, model: str, prompt: str, cap: int) -> Answer:
    """The real CLI; its output is counted in tokens by the server's own tokenizer."""
    env = {**os.environ, "MODEL_RUNNER_HOST": url}
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "run", model, prompt],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = b""
    ended = True
    deadline = time.monotonic() + 600
    while True:
        piece = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else b""
        if not piece:
            break
        out += piece
        # SmolLM2 writes about 4 characters a token: check the real count when near the cap.
        if len(out) > 3 * cap and count_tokens(url, model, out.decode(errors="replace")) >= cap:
            ended = False
            break
        if time.monotonic() > deadline:
            ended = False
            break
    if not ended:
        proc.kill()
    proc.wait()
    text = out.decode(errors="replace").strip()
    n = min(cap, count_tokens(url, model, text)) if text else 0
    return Answer(ended and proc.returncode == 0, n, text)


def count_tokens(url: str, model: str, text: str) -> int:
    """Tokens of `text`: a raw, echoed completion that generates nothing counts them."""
    reply = requests.post(f"{url}/engines/v1/completions", timeout=60, json={
        "model": model, "prompt": text, "max_tokens": 0}).json()
    return reply["usage"]["prompt_tokens"]


WAYS = {"dmr run": dmr_run, "openai": openai_chat, "anthropic": anthropic_messages,
        "ollama": ollama_chat}


def measure(url: str, model: str, cap: int, ways: list[str], workers: int) -> dict:
    results = {}
    for way in ways:
        ask = WAYS[way]
        started = time.monotonic()
        with ThreadPoolExecutor(workers) as pool:
            answers = list(pool.map(lambda p, ask=ask: ask(url, model, p, cap), PROMPTS))
        results[way] = {
            "ended": sum(a.ended for a in answers),
            "of": len(answers),
            "median_tokens": statistics.median(a.tokens for a in answers),
            "seconds": round(time.monotonic() - started, 1),
            "answers": [{"prompt": p, "ended": a.ended, "tokens": a.tokens,
                         "text": a.text[:300]} for p, a in zip(PROMPTS, answers, strict=True)],
        }
        print(f"{way:10} ended by themselves {results[way]['ended']:2}/{len(answers)}  "
              f"median {results[way]['median_tokens']:6} tokens  "
              f"({results[way]['seconds']} s)", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:12434")
    parser.add_argument("--model", default="ai/smollm2")
    parser.add_argument("--cap", type=int, default=1024, help="tokens before a stream is cut")
    parser.add_argument("--only", default=",".join(WAYS), help="comma-separated ways to ask")
    parser.add_argument("--workers", type=int, default=8, help="prompts in flight at once")
    parser.add_argument("--json", help="write every answer to this file")
    args = parser.parse_args()
    results = measure(args.url.rstrip("/"), args.model, args.cap, args.only.split(","),
                      args.workers)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
