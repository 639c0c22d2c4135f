"""Past the batching ceiling: the prompt cache, speculation and memory budget measured against
llama-server in the same run (bench/run.py calls this; docs/benchmarks.md has the method).

Systems, one at a time:
  ours              `dmr serve` defaults (prompt cache, speculation auto); the same requests
                    with `speculative: false` are "ours without drafts"
  ours, restarted   the same store after a graceful restart (prompt cache from disk)
  baseline          another checkout's server (--baseline DIR, e.g. the main branch): "today"
  llama-server      -np 8 (its host-RAM prompt cache on, as by default)
  llama-server ngram-mod   the same with --spec-type ngram-mod
  two models        ours with a memory budget that fits one of two models, asked in turn
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import workloads as w
from bench.servers import MODEL, ServerProc, free_port, start_llama_server, start_ours_env

OFF = {"speculative": False}


def measure(base: str, runs: int, *, ours: bool) -> dict:
    """The serving workloads on one running server."""
    out: dict = {}
    conv = w.conversations(base)
    out["conversations"] = {k: v for k, v in conv.items() if k != "histories"}
    out["_histories"] = conv["histories"]
    out["copy"] = w.copy_heavy(base, runs)
    out["prose"] = w.prose(base, runs)
    out["streams_1"] = w.streams(base, 1)
    out["streams_8"] = w.streams(base, 8)
    out["cold_prefill"] = w.cold_prefill(base)
    if ours:
        out["copy_off"] = w.copy_heavy(base, runs, **OFF)
        out["prose_off"] = w.prose(base, runs, **OFF)
        out["streams_8_off"] = w.streams(base, 8, **OFF)
    return out


def after_restart(start, histories: list) -> dict:
    """A new server on the same store: the conversations' follow-ups once more."""
    server = start()
    try:
        w.stream(server.base, [{"role": "user", "content": "hi"}], 1)  # load the model
        return w.follow_ups_again(server.base, histories)
    finally:
        server.stop()


def start_baseline(checkout: str, store: str) -> ServerProc:
    """`dmr serve` from another checkout with its own virtualenv (e.g. a checkout of main)."""
    python = str(Path(checkout) / ".venv" / "bin" / "python")
    port = free_port()
    cmd = [python, "-m", "server.cli", "serve", "--port", str(port), "--models-dir", store]
    return ServerProc("baseline", cmd, port, "/health", cwd=checkout)


def two_models(gguf: Path, store: str, rounds: int = 3) -> dict:
    """ai/smollm2 and a second model (the same weights packaged with another context size)
    under a budget that fits one: every request swaps them."""
    env = {"DMR_PROMPT_CACHE_MIB": "256", "DMR_MEMORY_BUDGET": "2GiB"}
    server = start_ours_env(store, env)
    try:
        subprocess.run([sys.executable, "-m", "server.cli", "package", "--gguf", str(gguf),
                        "--context-size", "2048", "ai/second"], check=True,
                       env={**os.environ, "MODEL_RUNNER_HOST": server.base},
                       capture_output=True)
        peak = [0.0]
        stop = threading.Event()

        def sample():
            while not stop.wait(0.05):
                peak[0] = max(peak[0], server.rss_mib())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            out = w.two_models(server.base, [MODEL, "ai/second"], rounds, server.rss_mib)
        finally:
            stop.set()
            sampler.join()
        out["peak_rss_mib"] = max(out["peak_rss_mib"], peak[0])
        out["budget_mib"] = 2048
        out["oom"] = "Killed" in Path(server.log.name).read_text(errors="replace") or \
            "out of memory" in Path(server.log.name).read_text(errors="replace").lower()
        return out
    finally:
        server.stop()


def run_all(results: dict, args, gguf: Path, runs: int) -> None:
    """The systems that only these workloads need (llama-server with ngram-mod, the baseline,
    two models); the others were measured by bench/run.py's main loop via `measure`."""
    if args.llama_server:
        print("llama-server --spec-type ngram-mod ...", flush=True)
        server = start_llama_server(args.llama_server, gguf, ["--spec-type", "ngram-mod"])
        try:
            results["llama-server ngram-mod"] = {"serving": {
                "copy": w.copy_heavy(server.base, runs), "prose": w.prose(server.base, runs)}}
        finally:
            server.stop()
    if args.baseline:
        print(f"baseline ({args.baseline}) ...", flush=True)
        server = start_baseline(args.baseline, tempfile.mkdtemp(prefix="bench-base-"))
        try:
            results["baseline"] = {"serving": measure(server.base, runs, ours=False)}
        finally:
            server.stop()
    print("two models under a memory budget ...", flush=True)
    results["two_models"] = two_models(gguf, tempfile.mkdtemp(prefix="bench-two-"))


def rounds(results: dict, args, gguf: Path, runs: int) -> None:
    """--serving-only --rounds N: every system N times, alternating the order each round
    (the machine's load drifts over minutes), each with a fresh store; medians."""
    from bench.servers import start_ours

    systems = [("ours", None)]
    if args.baseline:
        systems.append(("baseline", None))
    if args.llama_server:
        systems += [("llama-server", []), ("llama-server ngram-mod", ["--spec-type", "ngram-mod"])]
    seen: dict[str, list[dict]] = {name: [] for name, _ in systems}
    for n in range(args.rounds):
        for name, extra in systems if n % 2 == 0 else list(reversed(systems)):
            print(f"round {n + 1}: {name} ...", flush=True)
            store = tempfile.mkdtemp(prefix="bench-serving-")
            if name == "ours":
                server = start_ours(gguf, store)
            elif name == "baseline":
                server = start_baseline(args.baseline, store)
            else:
                server = start_llama_server(args.llama_server, gguf, extra)
            try:
                if name == "llama-server ngram-mod":
                    m = {"copy": w.copy_heavy(server.base, runs),
                         "prose": w.prose(server.base, runs)}
                else:
                    m = measure(server.base, runs, ours=name == "ours")
            finally:
                server.stop()
            if name == "ours":
                print(f"round {n + 1}: ours, restarted ...", flush=True)
                m["restart"] = after_restart(lambda s=store: start_ours(gguf, s),
                                             m["_histories"])
            m.pop("_histories", None)
            seen[name].append(m)
    for name, measured in seen.items():
        results[name] = {"serving": _median(measured), "rounds": measured}
    print("two models under a memory budget ...", flush=True)
    results["two_models"] = two_models(gguf, tempfile.mkdtemp(prefix="bench-two-"))


def _median(items: list):
    """Medians of the numbers in same-shaped results; the first of anything else."""
    import statistics

    first = items[0]
    if isinstance(first, dict):
        return {k: _median([i[k] for i in items if k in i]) for k in first}
    if isinstance(first, int | float) and not isinstance(first, bool):
        return statistics.median(items)
    return first


# ---------------------------------------------------------------------------- report


def report(r: dict) -> None:
    ours = r["ours"]["serving"]
    ls = r.get("llama-server", {}).get("serving")
    ngram = r.get("llama-server ngram-mod", {}).get("serving")
    base = r.get("baseline", {}).get("serving")
    print("\n| workload | ours | ours, no drafts | " + ("baseline | " if base else "")
          + ("llama-server | llama-server ngram-mod |" if ls else ""))
    print("|---|---|---|" + ("---|" if base else "") + ("---|---|" if ls else ""))

    def row(label, key, fmt, off=None, ngram_key=None):
        cells = [fmt(ours[key]), fmt(ours[off]) if off else ""]
        if base:
            cells.append(fmt(base[key]) if key in base else "")
        if ls:
            cells.append(fmt(ls[key]) if key in ls else "")
            cells.append(fmt(ngram[ngram_key or key]) if ngram and (ngram_key or key) in ngram
                         else "")
        print(f"| {label} | " + " | ".join(cells) + " |")

    conv = lambda c: f"{c['follow_up']:.3f} s ({c['cold']:.2f} s cold)"  # noqa: E731
    rate = lambda x: f"{x['decode']:.1f}"  # noqa: E731
    row("16 conversations / 8 slots: follow-up first token", "conversations", conv)
    print(f"| ... after a restart (disk spill) | {ours['restart']['follow_up']:.3f} s | |"
          + (" |" if base else "") + (" | |" if ls else ""))
    row("copy-heavy decode tok/s", "copy", rate, "copy_off")
    row("prose decode tok/s", "prose", rate, "prose_off")
    row("cold ~1,000-token prefill s", "cold_prefill", lambda x: f"{x:.2f}")
    row("8 streams aggregate tok/s", "streams_8", lambda x: f"{x:.1f}", "streams_8_off")
    row("1 stream tok/s", "streams_1", lambda x: f"{x:.1f}")
    today = base or {"copy": ours["copy_off"], "prose": ours["prose_off"],
                     "streams_8": ours["streams_8_off"]}
    today_name = "baseline" if base else "ours without drafts"
    checks = [
        ("follow-up / cold first token, 16 conversations", ours["conversations"]["ratio"],
         "<= 0.08"),
        ("follow-up after a restart / cold", ours["restart"]["follow_up"]
         / ours["conversations"]["cold"], "<= 0.15"),
        (f"copy-heavy decode / {today_name}", ours["copy"]["decode"] / today["copy"]["decode"],
         ">= 1.5"),
        (f"prose decode / {today_name}", ours["prose"]["decode"] / today["prose"]["decode"],
         ">= 0.97"),
        (f"8-stream aggregate / {today_name}", ours["streams_8"] / today["streams_8"],
         ">= 1.0 (not lower)"),
    ]
    if ngram:
        checks.append(("copy-heavy decode / llama-server ngram-mod",
                       ours["copy"]["decode"] / ngram["copy"]["decode"], ">= 1.0"))
    if ls:
        checks.append(("cold 1,000-token prefill speed / llama-server",
                       ls["cold_prefill"] / ours["cold_prefill"], ">= 1.0"))
        checks.append(("follow-up / cold first token, llama-server",
                       ls["conversations"]["ratio"], "(reference)"))
    print()
    for label, value, target in checks:
        print(f"- {label}: {value:.3f} (target {target})")
    same = ours["copy"]["text"] == ours["copy_off"]["text"] and \
        ours["prose"]["text"] == ours["prose_off"]["text"]
    print(f"- temperature 0, copy and prose answers identical with and without drafts: {same}")
    two = r.get("two_models")
    if two:
        print(f"- two models, budget {two['budget_mib']} MiB that fits one: {two['requests']} "
              f"requests, {two['swaps']} swaps, {len(two['errors'])} errors, peak RSS "
              f"{two['peak_rss_mib']:.0f} MiB, OOM: {two['oom']}, median request "
              f"{two['request_seconds_median']:.2f} s (a load included)")
        for error in two["errors"][:3]:
            print(f"  - {error}")
    load = os.getloadavg()
    print(f"- machine load (uptime) at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
