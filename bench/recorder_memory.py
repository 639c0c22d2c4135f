"""The request recorder's memory under many requests: RSS of `dmr serve` while N requests go
through every recorded dialect, with bodies that would add up if the ring were not bounded.

    python -m bench.recorder_memory [--requests 10000] [--clients 4] [--recorder-size 10]

A fixed round of request kinds: OpenAI chat (1 token, streamed and not), Ollama chat streamed
(1 token), Anthropic count_tokens with a 16 KB prompt, and an OpenAI chat carrying a 40 KB
base64 image (a fast 400 for SmolLM2, recorded with the image cut). The server's RSS is read
from /proc after warm-up and at checkpoints; the figures are in docs/observability.md.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time

import requests

from bench.run import ServerProc, free_port

MODEL = "ai/smollm2"
IMAGE = base64.b64encode(os.urandom(30000)).decode()  # 40 KB of base64


def _request(url: str, i: int) -> tuple[int, int]:
    """One request of kind i % 5: (status, bytes sent)."""
    kind = i % 5
    say = [{"role": "user", "content": f"Say hi to visitor {i}."}]
    if kind in (0, 1):
        body = {"model": MODEL, "messages": say, "max_tokens": 1, "stream": kind == 1}
        path = "/engines/v1/chat/completions"
    elif kind == 2:
        body = {"model": MODEL, "messages": say, "stream": True, "options": {"num_predict": 1}}
        path = "/api/chat"
    elif kind == 3:
        text = f"Visitor {i} wrote: " + " ".join(f"word{j % 997}" for j in range(2000))
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
        path = "/v1/messages/count_tokens"
    else:
        body = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "text", "text": f"Describe picture {i}."},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE}"}}]}]}
        path = "/engines/v1/chat/completions"
    data = json.dumps(body)
    r = requests.post(url + path, data=data, headers={"Content-Type": "application/json"},
                      timeout=120)
    if not r.content:  # read streams to the end
        raise RuntimeError(f"{path}: empty answer")
    return r.status_code, len(data)


def run(n: int, clients: int, recorder_size: int) -> dict:
    store = tempfile.mkdtemp(prefix="recorder-bench-")
    port = free_port()
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port",
           str(port), "--models-dir", store]
    env = {"DMR_RECORDER_SIZE": str(recorder_size), "DMR_THREADS": os.environ.get(
        "DMR_THREADS", "1")}
    server = ServerProc("recorder", cmd, port, "/health", env=env)
    try:
        url = server.base
        for i in range(25):  # load the model, warm every route
            _request(url, i)
        checkpoints = sorted({n // 10, n // 4, n // 2, 3 * n // 4, n})
        rss = {"warm": round(server.rss_mib(), 1)}
        statuses: dict[int, int] = {}
        sent = 0
        started = time.monotonic()
        done = 0
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            for mark in checkpoints:
                for status, size in pool.map(lambda i: _request(url, i),
                                             range(done, mark)):
                    statuses[status] = statuses.get(status, 0) + 1
                    sent += size
                done = mark
                rss[str(mark)] = round(server.rss_mib(), 1)
                print(f"  {mark:>6} requests: RSS {rss[str(mark)]} MiB", flush=True)
        seconds = time.monotonic() - started
        records = requests.get(url + "/engines/requests", timeout=30).content
        kept = sum(g["count"] for g in json.loads(records))
        return {"requests": n, "clients": clients, "recorder_size": recorder_size,
                "seconds": round(seconds, 1), "statuses": statuses,
                "mib_sent": round(sent / 2**20, 1), "records_kept": kept,
                "records_json_kib": round(len(records) / 1024, 1), "rss_mib": rss}
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--recorder-size", type=int, default=10,
                        help="records per model (0: the recorder off, for a baseline)")
    args = parser.parse_args(argv)
    print(f"recorder memory: {args.requests} requests, {args.clients} clients, "
          f"recorder_size {args.recorder_size}", flush=True)
    result = run(args.requests, args.clients, args.recorder_size)
    print(json.dumps(result, indent=1))
    return 0 if set(result["statuses"]) <= {200, 400} else 1


if __name__ == "__main__":
    sys.exit(main())
