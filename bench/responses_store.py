"""The persistent Responses store under load: many stored responses, a restart, a chain.

    python -m bench.responses_store [--responses 1000] [--max-count 500] [--clients 4]

Starts `dmr serve` on a fresh models dir with the store bounded to --max-count responses,
creates --responses short responses (store: true) through the Responses API, reads the
server's RSS along the way, restarts the server, checks that exactly the newest --max-count
survived (the oldest evicted), continues a `previous_response_id` chain from the oldest one
kept, and prints the figures (RSS per phase, store size on disk, create/retrieve latency).
What they mean: docs/openai.md (Responses, limits).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.load import rss_mib
from bench.run import ServerProc, free_port

MODEL = "ai/smollm2"


def start(models: Path, max_count: int) -> ServerProc:
    port = free_port()
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port",
           str(port), "--models-dir", str(models)]
    env = {"DMR_THREADS": os.environ.get("DMR_THREADS", "1"),
           "DMR_RESPONSES_MAX_COUNT": str(max_count)}
    return ServerProc("ours", cmd, port, "/health", env=env)


def create(base: str, i: int) -> tuple[str, float]:
    started = time.monotonic()
    r = requests.post(base + "/v1/responses", timeout=120, json={
        "model": MODEL, "input": f"Say the number {i}.", "max_output_tokens": 4,
        "temperature": 0, "metadata": {"i": str(i)}})
    r.raise_for_status()
    return r.json()["id"], time.monotonic() - started


def store_bytes(models: Path) -> int:
    return sum(f.stat().st_size for f in (models / "responses").glob("*.json"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--responses", type=int, default=1000)
    ap.add_argument("--max-count", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-responses-"))
    models = root / "models"
    figures: dict = {"responses": args.responses, "max_count": args.max_count, "rss_mib": {}}
    server = start(models, args.max_count)
    t0 = time.monotonic()
    try:
        create(server.base, -1)  # loads the model
        figures["rss_mib"]["after_first"] = rss_mib(server.proc.pid)
        ids: list[str] = [""] * args.responses
        latencies: list[float] = []
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            done = 0
            for chunk in range(0, args.responses, 250):
                span = range(chunk, min(chunk + 250, args.responses))
                for i, (rid, seconds) in zip(span, pool.map(lambda i: create(server.base, i),
                                                             span), strict=True):
                    ids[i] = rid
                    latencies.append(seconds)
                done += len(span)
                figures["rss_mib"][f"after_{done}"] = rss_mib(server.proc.pid)
        figures["create_median_s"] = statistics.median(latencies)
        figures["store_bytes"] = store_bytes(models)
        figures["store_files"] = len(list((models / "responses").glob("*.json")))
    finally:
        server.stop()
    figures["create_s"] = round(time.monotonic() - t0, 1)
    started = time.monotonic()
    server = start(models, args.max_count)
    try:
        figures["restart_s"] = round(time.monotonic() - started, 2)
        figures["rss_mib"]["after_restart"] = rss_mib(server.proc.pid)
        kept = [rid for rid in ids
                if requests.get(f"{server.base}/v1/responses/{rid}", timeout=30).status_code == 200]
        expected = ids[-args.max_count:] if args.max_count else ids
        figures["kept"] = len(kept)
        figures["kept_is_newest"] = kept == expected
        timings = []
        for rid in kept[:50]:
            t = time.monotonic()
            requests.get(f"{server.base}/v1/responses/{rid}", timeout=30).raise_for_status()
            timings.append(time.monotonic() - t)
        figures["retrieve_median_ms"] = round(statistics.median(timings) * 1000, 2)
        oldest = kept[0]
        first = requests.get(f"{server.base}/v1/responses/{oldest}", timeout=30).json()
        r = requests.post(server.base + "/v1/responses", timeout=120, json={
            "model": MODEL, "previous_response_id": oldest, "input": "And the next one?",
            "max_output_tokens": 4, "temperature": 0})
        figures["chain_status"] = r.status_code
        figures["chain_prompt_grew"] = (r.ok and r.json()["usage"]["input_tokens"]
                                        > first["usage"]["input_tokens"])
        evicted = ids[0] if len(ids) > len(kept) else None
        if evicted:
            figures["evicted_previous_status"] = requests.post(
                server.base + "/v1/responses", timeout=60,
                json={"model": MODEL, "previous_response_id": evicted, "input": "x",
                      "max_output_tokens": 1}).status_code
        figures["rss_mib"]["after_chain"] = rss_mib(server.proc.pid)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    ok = figures["kept_is_newest"] and figures["chain_status"] == 200 and \
        figures["chain_prompt_grew"] and figures.get("evicted_previous_status", 404) == 404
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
