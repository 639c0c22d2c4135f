"""What the supervised runner process costs: the same server with each model in a runner
process (the default) and in process (`runner: inprocess`, the engine before the runner),
measured in one run: both servers up at once, one busy at a time, modes alternating within
each round, several rounds (the machine's load drifts; pairs see the same drift).

    python -m bench.runner [--rounds 5] [--tokens 128] [--extra-buffers-ab]

Prints medians and the ratios the CPU issue asks for: single-stream decode and 8-stream
aggregate over HTTP >= 0.97x of in process, TTFT of a request beside 7 streams <= 0.2 s,
and what a model load costs with each extra-buffers choice (the probe included).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.run import MODEL, ServerProc, concurrency, free_port, prompt, single, stream_chat

LOADED = re.compile(r"loaded \S+ on \S+ in ([0-9.]+)s")


def start(env: dict[str, str], store: str | None = None) -> ServerProc:
    port = free_port()
    store = store or tempfile.mkdtemp(prefix="bench-runner-")
    cmd = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--models-dir", store]
    return ServerProc("ours", cmd, port, "/health", env=env)


def load_seconds(server: ServerProc) -> float:
    stream_chat(server.base, prompt(0), 2, MODEL)
    for _ in range(50):
        found = LOADED.findall(Path(server.log.name).read_text(errors="replace"))
        if found:
            return float(found[-1])
        time.sleep(0.1)
    raise RuntimeError("no load line in the server log")


def ttft_beside(base: str, tokens: int, trials: int) -> float:
    import threading

    ttfts = []
    for t in range(trials):
        holders = [threading.Thread(target=stream_chat, args=(base, prompt(100 + i), tokens,
                                                             MODEL)) for i in range(7)]
        for h in holders:
            h.start()
        time.sleep(1.5)
        ttfts.append(stream_chat(base, prompt(200 + t), 4, MODEL).ttft)
        for h in holders:
            h.join()
    return statistics.median(ttfts)


def measure(servers: dict[str, ServerProc], tokens: int, rounds: int) -> dict[str, list]:
    """Both servers up at once, only one busy at a time; each round measures every mode in
    turn (order alternating), so drifts in the machine's load hit all modes alike."""
    runs: dict[str, list] = {mode: [] for mode in servers}
    for mode, server in servers.items():
        runs[mode].append({"load_s": load_seconds(server)})
    for round_ in range(rounds):
        order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
        print(f"round {round_ + 1}: {', '.join(order)} ...", flush=True)
        for mode in order:
            base = servers[mode].base
            out = runs[mode][round_] if round_ == 0 else {}
            out["single"] = single(base, tokens, 3)["decode"]
            out["8_streams"] = concurrency(base, tokens, [8])[8]["aggregate"]
            out["ttft_beside_7"] = ttft_beside(base, tokens * 2, 2)
            out["rss_mib"] = servers[mode].rss_mib()
            if round_:
                runs[mode].append(out)
    return runs


def load_costs() -> dict:
    """Model load seconds: in process; a runner probing (a new store); a runner whose
    verdict is remembered (the same store again); a runner with extra buffers off."""
    out = {}
    out["inprocess"] = _load({"DMR_RUNNER": "inprocess"})
    store = tempfile.mkdtemp(prefix="bench-runner-")
    out["runner, auto (probe)"] = _load({}, store)
    out["runner, auto (remembered)"] = _load({}, store)
    out["runner, off"] = _load({"DMR_EXTRA_BUFFERS": "off"})
    return out


def _load(env: dict[str, str], store: str | None = None) -> float:
    server = start(env, store)
    try:
        return load_seconds(server)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--extra-buffers-ab", action="store_true",
                        help="also compare extra buffers on and off (both in runners)")
    args = parser.parse_args(argv)
    modes = {"runner": {}, "inprocess": {"DMR_RUNNER": "inprocess"}}
    if args.extra_buffers_ab:
        modes["runner, extra buffers off"] = {"DMR_EXTRA_BUFFERS": "off"}
        modes["runner, extra buffers on"] = {"DMR_EXTRA_BUFFERS": "on"}
    servers = {mode: start(env) for mode, env in modes.items()}
    try:
        runs = measure(servers, args.tokens, args.rounds)
    finally:
        for server in servers.values():
            server.stop()
    med = {m: {k: statistics.median(r[k] for r in rs if k in r) for k in rs[-1]}
           for m, rs in runs.items()}
    med = {m: {**v, "load_s": runs[m][0]["load_s"]} for m, v in med.items()}
    costs = load_costs()
    print(json.dumps({"runs": runs, "medians": med, "load_seconds": costs}, indent=1))
    print()
    print("| mode | 1-stream tok/s | 8-stream tok/s | TTFT beside 7 (s) | load (s) | RSS MiB |")
    print("|---|---|---|---|---|---|")
    for mode, m in med.items():
        print(f"| {mode} | {m['single']:.1f} | {m['8_streams']:.1f} | {m['ttft_beside_7']:.3f} "
              f"| {m['load_s']:.2f} | {m['rss_mib']:.0f} |")
    r, i = med["runner"], med["inprocess"]
    print()
    print(f"- single stream, runner / in process: {r['single'] / i['single']:.3f} (goal >= 0.97)")
    print(f"- 8 streams, runner / in process: {r['8_streams'] / i['8_streams']:.3f} "
          "(goal >= 0.97)")
    print(f"- TTFT beside 7 streams, runner: {r['ttft_beside_7']:.3f} s (goal <= 0.2)")
    print("- model load seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
