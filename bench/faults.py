"""Recovery from runner crashes, measured: a model's runner is killed with SIGSEGV (what
llama.cpp's AMX kernels do) mid-stream, N times.

    python -m bench.faults [--trials 5]

For each trial: the time from the signal to the client's in-band error, and from the signal
to the first successful answer of the next request (a new runner: process start, model load,
probe). Also the first load of a simulated AMX CPU whose probe crashes (DMR_CPUINFO +
DMR_FAULT, see server/engines/llamacpp/faults.py). Prints medians.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.run import MODEL, NO_EOS, ServerProc, free_port

FAKE_AMX = "model name\t: simulated Xeon\nflags\t\t: avx2 avx512f amx_tile amx_int8\n"


def start(env: dict[str, str] | None = None) -> ServerProc:
    port = free_port()
    store = tempfile.mkdtemp(prefix="bench-faults-")
    cmd = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--models-dir", store]
    return ServerProc("ours", cmd, port, "/health", env=env)


def chat(base: str) -> requests.Response:
    return requests.post(base + "/engines/v1/chat/completions", timeout=120, json={
        "model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})


def runner_pid(base: str) -> int:
    return next(e["runner_pid"] for e in requests.get(base + "/engines/ps").json())


def trial(base: str) -> dict:
    assert chat(base).status_code == 200
    pid = runner_pid(base)
    body = {"model": MODEL, "stream": True, "max_tokens": 500, "logit_bias": NO_EOS,
            "messages": [{"role": "user", "content": "Tell me a story."}]}
    with requests.post(base + "/engines/v1/chat/completions", json=body, stream=True) as r:
        lines = r.iter_lines()
        for line in lines:
            if b'"content"' in line:
                break
        killed = time.monotonic()
        os.kill(pid, signal.SIGSEGV)
        error_at = None
        for line in lines:
            if b'"error"' in line:
                error_at = time.monotonic()
                break
    while True:
        r = chat(base)
        if r.status_code == 200:
            recovered = time.monotonic()
            break
    return {"error_s": (error_at or float("nan")) - killed, "recovered_s": recovered - killed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args(argv)
    server = start({"DMR_CRASH_LOOP_LIMIT": "0"})
    try:
        trials = [trial(server.base) for _ in range(args.trials)]
    finally:
        server.stop()
    cpuinfo = Path(tempfile.mkdtemp()) / "cpuinfo"
    cpuinfo.write_text(FAKE_AMX)
    server = start({"DMR_CPUINFO": str(cpuinfo), "DMR_FAULT": "amx-segv"})
    try:
        started = time.monotonic()
        assert chat(server.base).status_code == 200
        amx_first = time.monotonic() - started
    finally:
        server.stop()
    out = {"trials": trials,
           "error_s_median": statistics.median(t["error_s"] for t in trials),
           "recovered_s_median": statistics.median(t["recovered_s"] for t in trials),
           "recovered_s_max": max(t["recovered_s"] for t in trials),
           "simulated_amx_first_request_s": amx_first}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
