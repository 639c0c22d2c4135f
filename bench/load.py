"""A bounded load run on loopback: many clients, every dialect, streaming and not.

    python -m bench.load [--requests 500] [--clients 32] [--url URL] [--quick] [--json PATH]

Sends N requests from C client threads in a fixed round-robin of request kinds (OpenAI chat,
legacy completions and embeddings; Anthropic messages; Ollama chat, generate and embed;
streamed and not), through the official SDKs and through `requests` for raw SSE. Every answer
is checked, not just its status: text or vectors of the right shape, and streams that end the
way their dialect says they end. The server's memory (RSS of its process tree) is read from
/proc before the load, during it and after. Without --url it starts its own `dmr serve` on a
free 127.0.0.1 port with a fresh model store. Exit status 1 on any failure or 5xx.
What the figures mean: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ipaddress
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import requests

from bench.run import ServerProc, free_port

MODEL = "ai/smollm2"
QUICK = {"requests": 60, "clients": 8}
SUBJECTS = ["a lighthouse", "a river", "a violin", "a glacier", "a beehive", "a comet",
            "a bakery", "a chess game", "a volcano", "a library", "a sailboat", "a desert",
            "a clock tower", "a forest fire", "a submarine", "a garden", "a bridge",
            "a thunderstorm", "a robot", "a market"]
OVERLOADED = (503, 529)


class BadBody(Exception):
    """The server answered 2xx but the answer is wrong (empty, wrong shape, cut-off stream)."""


def check(condition: object, message: str) -> None:
    """Verify one property of an answer; a failed check is a "body" failure."""
    if not condition:
        raise BadBody(message)


# ---------------------------------------------------------------------------- prompts


def subject(i: int) -> str:
    return SUBJECTS[i % len(SUBJECTS)]


def question(i: int) -> str:
    """Distinct per request, and different from its first words on, so few prefix-cache hits."""
    return f"{subject(i).capitalize()}, case {i}: describe it in one short sentence."


def story_start(i: int) -> str:
    return f"Story {i}. Once upon a time there was {subject(i)} that"


def chat(i: int) -> list[dict]:
    return [{"role": "user", "content": question(i)}]


def embed_inputs(i: int) -> list[str]:
    return [question(i), story_start(i)]


# ---------------------------------------------------------------------------- clients


class Context:
    """What every request needs: the server, the limits, and each thread's own SDK clients.

    Each client thread builds its own SDK clients, as separate users would. The SDKs' own
    retries are off: a retried 503 would hide exactly what this run is looking for.
    """

    def __init__(self, url: str, model: str, max_tokens: int, timeout: float):
        self.url, self.model, self.max_tokens, self.timeout = url, model, max_tokens, timeout
        self.embedding_dim: int | None = None  # learned from the warm-up's first embedding
        self._local = threading.local()

    def _cached(self, key: str, make: Callable[[], object]):
        cache = self._local.__dict__
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def openai(self, prefix: str):
        import openai

        return self._cached("openai" + prefix, lambda: openai.OpenAI(
            base_url=self.url + prefix, api_key="unused", max_retries=0, timeout=self.timeout))

    def anthropic(self, prefix: str = ""):
        import anthropic

        return self._cached("anthropic" + prefix, lambda: anthropic.Anthropic(
            base_url=self.url + prefix, api_key="unused", max_retries=0, timeout=self.timeout))

    def ollama(self):
        import ollama

        return self._cached("ollama", lambda: ollama.Client(host=self.url, timeout=self.timeout))

    def session(self) -> requests.Session:
        return self._cached("requests", requests.Session)


# ---------------------------------------------------------------------------- checks


def check_vectors(ctx: Context, vectors: list[list[float]], count: int) -> None:
    """`count` finite, L2-normalised vectors of the model's embedding size."""
    check(len(vectors) == count, f"{len(vectors)} vectors for {count} inputs")
    if ctx.embedding_dim is None:  # the warm-up's first embedding request sets it
        ctx.embedding_dim = len(vectors[0])
    dim = ctx.embedding_dim
    for v in vectors:
        check(len(v) == dim and dim > 0, f"vector of {len(v)} values, expected {dim}")
        check(all(math.isfinite(x) for x in v), "non-finite value in a vector")
        norm = math.sqrt(sum(x * x for x in v))
        check(abs(norm - 1) < 1e-3, f"vector norm {norm:.4f}, expected 1")


def sse_data(response: requests.Response) -> list[str]:
    """The `data:` payloads of an SSE response, in order."""
    return [line[5:].strip() for line in response.iter_lines(decode_unicode=True)
            if line and line.startswith("data:")]


def check_openai_sse(payloads: list[str], field_of: Callable[[dict], str | None]) -> str:
    """An OpenAI stream: JSON chunks, one with a finish_reason, then `[DONE]` and nothing else.

    Returns the streamed text.
    """
    check(payloads and payloads[-1] == "[DONE]", "stream did not end with data: [DONE]")
    check("[DONE]" not in payloads[:-1], "data after [DONE]")
    text, finish = "", None
    for payload in payloads[:-1]:
        chunk = json.loads(payload)
        check("error" not in chunk, f"error in stream: {chunk.get('error')}")
        for choice in chunk.get("choices") or []:
            text += field_of(choice) or ""
            finish = choice.get("finish_reason") or finish
    check(finish in ("stop", "length"), f"finish_reason {finish!r}")
    return text


def check_ollama_chunks(chunks: list, text: str) -> None:
    check(chunks and chunks[-1].done, "stream did not end with done: true")
    check(not any(c.done for c in chunks[:-1]), "done: true before the last chunk")
    check(chunks[-1].done_reason in ("stop", "length"), f"done_reason {chunks[-1].done_reason!r}")
    check(chunks[-1].eval_count, "no eval_count in the final chunk")
    check(text, "empty answer")


# ---------------------------------------------------------------------------- request kinds
# Each sends request number i and raises BadBody when the answer is wrong.


def openai_chat(ctx: Context, i: int) -> None:
    reply = ctx.openai("/engines/v1").chat.completions.create(
        model=ctx.model, messages=chat(i), max_tokens=ctx.max_tokens)
    choice = reply.choices[0]
    check(choice.message.content, "empty answer")
    check(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason!r}")
    check(reply.usage and reply.usage.completion_tokens > 0, "no completion_tokens in usage")


def openai_chat_stream(ctx: Context, i: int) -> None:
    """Through the SDK on the /v1 alias, with the usage chunk DMR sends last."""
    stream = ctx.openai("/v1").chat.completions.create(
        model=ctx.model, messages=chat(i), max_tokens=ctx.max_tokens, stream=True,
        stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    with stream:
        for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    check(text, "empty answer")
    check(finish in ("stop", "length"), f"finish_reason {finish!r}")
    check(usage and usage.completion_tokens > 0, "no usage chunk")


def raw_sse(ctx: Context, path: str, body: dict) -> list[str]:
    """POST a streaming request with `requests` and return its SSE data payloads."""
    with ctx.session().post(ctx.url + path, json={**body, "stream": True}, stream=True,
                            timeout=ctx.timeout) as r:
        r.raise_for_status()
        return sse_data(r)


def raw_chat_stream(ctx: Context, i: int) -> None:
    """Raw SSE, so the `data: [DONE]` terminator itself is checked (the SDK hides it)."""
    payloads = raw_sse(ctx, "/engines/v1/chat/completions",
                       {"model": ctx.model, "messages": chat(i), "max_tokens": ctx.max_tokens})
    text = check_openai_sse(payloads, lambda c: (c.get("delta") or {}).get("content"))
    check(text, "empty answer")


def openai_completion(ctx: Context, i: int) -> None:
    reply = ctx.openai("/engines/llama.cpp/v1").completions.create(
        model=ctx.model, prompt=story_start(i), max_tokens=ctx.max_tokens)
    check(reply.choices and reply.choices[0].text, "empty completion")
    check(reply.choices[0].finish_reason in ("stop", "length"), "no finish_reason")


def raw_completion_stream(ctx: Context, i: int) -> None:
    payloads = raw_sse(ctx, "/v1/completions", {"model": ctx.model, "prompt": story_start(i),
                                                "max_tokens": ctx.max_tokens})
    check(check_openai_sse(payloads, lambda c: c.get("text")), "empty completion")


def openai_embeddings(ctx: Context, i: int) -> None:
    reply = ctx.openai("/engines/v1").embeddings.create(model=ctx.model, input=embed_inputs(i))
    check([d.index for d in reply.data] == [0, 1], "embeddings out of order")
    check_vectors(ctx, [d.embedding for d in reply.data], 2)


def anthropic_messages(ctx: Context, i: int) -> None:
    """Non-streamed, at the root (/v1/messages), as ANTHROPIC_BASE_URL users call it."""
    reply = ctx.anthropic().messages.create(model=ctx.model, messages=chat(i),
                                            max_tokens=ctx.max_tokens)
    text = "".join(b.text for b in reply.content if b.type == "text")
    check(text, "empty answer")
    check(reply.stop_reason in ("end_turn", "max_tokens"), f"stop_reason {reply.stop_reason!r}")
    check(reply.usage.output_tokens > 0, "no output_tokens")


def anthropic_stream(ctx: Context, i: int) -> None:
    """Streamed under /anthropic; the raw events, so their order is checked."""
    events = list(ctx.anthropic("/anthropic").messages.create(
        model=ctx.model, messages=chat(i), max_tokens=ctx.max_tokens, stream=True))
    types = [e.type for e in events]
    check(types[:1] == ["message_start"], f"stream starts with {types[:1]}")
    check(types[-1:] == ["message_stop"], f"stream ends with {types[-1:]}")
    check("error" not in types, "error event in the stream")
    text = "".join(e.delta.text for e in events
                   if e.type == "content_block_delta" and e.delta.type == "text_delta")
    check(text, "empty answer")
    deltas = [e for e in events if e.type == "message_delta"]
    check(len(deltas) == 1 and deltas[0].delta.stop_reason in ("end_turn", "max_tokens"),
          "no message_delta with a stop_reason")


def ollama_options(ctx: Context) -> dict:
    return {"num_predict": ctx.max_tokens}


def ollama_chat(ctx: Context, i: int) -> None:
    reply = ctx.ollama().chat(model=ctx.model, messages=chat(i), options=ollama_options(ctx))
    check(reply.done and reply.done_reason in ("stop", "length"), "not done")
    check(reply.message.content, "empty answer")


def ollama_chat_stream(ctx: Context, i: int) -> None:
    chunks = list(ctx.ollama().chat(model=ctx.model, messages=chat(i), stream=True,
                                    options=ollama_options(ctx)))
    check_ollama_chunks(chunks, "".join(c.message.content or "" for c in chunks))


def ollama_generate(ctx: Context, i: int) -> None:
    reply = ctx.ollama().generate(model=ctx.model, prompt=question(i),
                                  options=ollama_options(ctx))
    check(reply.done and reply.done_reason in ("stop", "length"), "not done")
    check(reply.response, "empty answer")


def ollama_generate_stream(ctx: Context, i: int) -> None:
    chunks = list(ctx.ollama().generate(model=ctx.model, prompt=question(i), stream=True,
                                        options=ollama_options(ctx)))
    check_ollama_chunks(chunks, "".join(c.response or "" for c in chunks))


def ollama_embed(ctx: Context, i: int) -> None:
    reply = ctx.ollama().embed(model=ctx.model, input=embed_inputs(i))
    check_vectors(ctx, [list(v) for v in reply.embeddings], 2)


# name -> (function, SDK module it needs or None). The order is the round-robin order.
KINDS: dict[str, tuple[Callable[[Context, int], None], str | None]] = {
    "openai_chat": (openai_chat, "openai"),
    "openai_chat_stream": (openai_chat_stream, "openai"),
    "raw_chat_stream": (raw_chat_stream, None),
    "openai_completion": (openai_completion, "openai"),
    "raw_completion_stream": (raw_completion_stream, None),
    "openai_embeddings": (openai_embeddings, "openai"),
    "anthropic_messages": (anthropic_messages, "anthropic"),
    "anthropic_stream": (anthropic_stream, "anthropic"),
    "ollama_chat": (ollama_chat, "ollama"),
    "ollama_chat_stream": (ollama_chat_stream, "ollama"),
    "ollama_generate": (ollama_generate, "ollama"),
    "ollama_generate_stream": (ollama_generate_stream, "ollama"),
    "ollama_embed": (ollama_embed, "ollama"),
}


def available_kinds() -> tuple[list[str], list[str]]:
    """(kinds whose SDK is installed, kinds skipped). `pip install -e '.[test]'` has them all."""
    usable, skipped = [], []
    for name, (_fn, module) in KINDS.items():
        try:
            if module:
                __import__(module)
            usable.append(name)
        except ImportError:
            skipped.append(name)
    return usable, skipped


# ---------------------------------------------------------------------------- one request


@dataclass
class Result:
    """One request: how long it took and, if it failed, how."""

    kind: str
    index: int
    seconds: float
    failure: str | None = None  # "exception", "status" or "body"
    status: int | None = None
    message: str = ""


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an SDK or `requests` exception carries, if it is a real one."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    return status if isinstance(status, int) and 100 <= status <= 599 else None


def send(ctx: Context, kind: str, i: int) -> Result:
    """Send request `i` of `kind`, classifying any failure instead of raising it."""
    fn = KINDS[kind][0]
    start = time.perf_counter()
    try:
        fn(ctx, i)
    except BadBody as exc:
        return Result(kind, i, time.perf_counter() - start, "body", None, str(exc))
    except Exception as exc:  # noqa: BLE001 - every way a request can fail is counted
        status = http_status(exc)
        failure = "status" if status is not None and not 200 <= status < 300 else "exception"
        message = f"{type(exc).__name__}: {exc}"[:300]
        return Result(kind, i, time.perf_counter() - start, failure, status, message)
    return Result(kind, i, time.perf_counter() - start)


# ---------------------------------------------------------------------------- memory


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # comm may hold spaces and parentheses


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    parents = {int(p.name): _ppid(int(p.name)) for p in Path("/proc").iterdir()
               if p.name.isdigit()}
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += frontier
    return sorted(tree)


def rss_mib(root: int) -> float | None:
    """Resident memory of a process tree, MiB (a Gunicorn arbiter and its worker)."""
    total, seen = 0, False
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    seen = True
        except OSError:
            continue
    return total / 1024 if seen else None


def listening_pid(url: str) -> int | None:
    """The root of the process tree listening on a loopback URL's port, found via /proc.

    Only works for servers of the same user on this machine; otherwise RSS is not reported.
    """
    parts = urlsplit(url)
    try:
        if not ipaddress.ip_address(parts.hostname or "").is_loopback:
            return None
    except ValueError:
        if parts.hostname != "localhost":
            return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    holders = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                holders.add(int(proc.name))
        except OSError:
            continue
    roots = [pid for pid in holders if _ppid(pid) not in holders]
    return min(roots) if roots else None


class RssSampler:
    """Samples a process tree's RSS in the background: the peak, and the trend over the run."""

    def __init__(self, root: int, every: float = 0.25):
        self.root, self.every = root, every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            mib = rss_mib(self.root)
            if mib is not None:
                self.samples.append(mib)
            self._stop.wait(self.every)

    @property
    def peak(self) -> float | None:
        return max(self.samples, default=None)

    def timeline(self, points: int = 10) -> list[float]:
        """`points` samples evenly spread over the run: flat memory is a flat list."""
        if not self.samples:
            return []
        last = len(self.samples) - 1
        return [self.samples[round(k * last / (points - 1))] for k in range(points)]

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------- the run


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency(results: list[Result]) -> dict:
    """p50/p90/p99/max seconds, end to end (a stream counts until its last byte)."""
    seconds = [r.seconds for r in results]
    if not seconds:
        return {}
    return {"p50": percentile(seconds, 50), "p90": percentile(seconds, 90),
            "p99": percentile(seconds, 99), "max": max(seconds)}


@dataclass
class Report:
    """A whole run; failures include the warm-up's, 5xx and overloaded are among them."""

    url: str
    requests: int
    clients: int
    max_tokens: int
    seconds: float = 0.0
    results: list[Result] = field(default_factory=list)
    warmup: list[Result] = field(default_factory=list)
    skipped_kinds: list[str] = field(default_factory=list)
    rss_mib: dict[str, float | None] = field(default_factory=dict)  # start, before, peak, after
    rss_timeline: list[float] = field(default_factory=list)  # MiB at 10 points during the load
    server_pids: dict[str, list[int]] = field(default_factory=dict)  # before, after

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.warmup + self.results if r.failure]

    @property
    def five_xx(self) -> int:
        return sum(1 for r in self.failures if r.status and r.status >= 500)

    @property
    def overloaded(self) -> int:
        return sum(1 for r in self.failures if r.status in OVERLOADED)

    @property
    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.kind] = counts.get(r.kind, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> dict:
        """Everything but the per-request rows: what --json writes and the table shows."""
        by_type: dict[str, int] = {}
        for r in self.failures:
            by_type[r.failure or ""] = by_type.get(r.failure or "", 0) + 1
        per_kind = {kind: {"requests": n,
                           "failed": sum(1 for r in self.results if r.kind == kind and r.failure),
                           **latency([r for r in self.results if r.kind == kind])}
                    for kind, n in self.kinds.items()}
        return {"url": self.url, "requests": self.requests, "clients": self.clients,
                "max_tokens": self.max_tokens, "seconds": self.seconds,
                "requests_per_second": len(self.results) / self.seconds if self.seconds else 0,
                "failures": len(self.failures), "failures_by_type": by_type,
                "five_xx": self.five_xx, "overloaded": self.overloaded,
                "latency": latency(self.results), "per_kind": per_kind,
                "skipped_kinds": self.skipped_kinds, "rss_mib": self.rss_mib,
                "rss_timeline_mib": self.rss_timeline,
                "server_pids": self.server_pids,
                "failed_requests": [asdict(r) for r in self.failures]}


def run_load(url: str, total: int = 500, clients: int = 32, *, max_tokens: int = 24,
             model: str = MODEL, timeout: float = 120.0, pid: int | None = None) -> Report:
    """Warm up with one request of each kind, then send `total` requests from `clients` threads.

    RSS is read from the process tree rooted at `pid`, or at whatever listens on the URL's
    loopback port; "before" is taken after the warm-up, so lazy first-use allocations (the
    embedding path, each dialect's first request) are not mistaken for growth.
    """
    url = url.rstrip("/")
    ctx = Context(url, model, max_tokens, timeout)
    kinds, skipped = available_kinds()
    report = Report(url, total, clients, max_tokens, skipped_kinds=skipped)
    root = pid or listening_pid(url)
    report.rss_mib["start"] = rss_mib(root) if root else None
    report.warmup = [send(ctx, kind, -1 - n) for n, kind in enumerate(kinds)]
    if root:
        report.rss_mib["before"] = rss_mib(root)
        report.server_pids["before"] = process_tree(root)
    plan = [(kinds[i % len(kinds)], i) for i in range(total)]
    sampler = RssSampler(root) if root else contextlib.nullcontext()
    start = time.perf_counter()
    with sampler, concurrent.futures.ThreadPoolExecutor(clients) as pool:
        report.results = list(pool.map(lambda job: send(ctx, *job), plan))
    report.seconds = time.perf_counter() - start
    if root:
        report.rss_mib["after"] = rss_mib(root)
        report.rss_mib["peak"] = max(sampler.peak or 0.0, report.rss_mib["after"] or 0.0)
        report.rss_timeline = sampler.timeline()
        report.server_pids["after"] = process_tree(root)
    return report


# ---------------------------------------------------------------------------- output


def rss_line(rss: dict[str, float | None]) -> str:
    """The memory figures in one line, saying so when a figure is missing."""
    if rss.get("before") is None:
        return "not available (no server process found on this machine)"

    def mib(key: str) -> str:
        return "gone" if rss.get(key) is None else f"{rss[key]:.0f} MiB"

    growth = (f" ({rss['after'] - rss['before']:+.0f} MiB)" if rss.get("after") is not None
              else " (the server exited)")
    return (f"{mib('start')} at start, {mib('before')} after warm-up, {mib('peak')} peak, "
            f"{mib('after')} after{growth}")


def print_report(report: Report, out: TextIO | None = None) -> None:
    """A Markdown table per kind, then failures, 5xx and memory: pasteable into the docs."""
    out = out or sys.stdout
    s = report.summary()

    def row(name: str, n: int, failed: int, lat: dict) -> str:
        cells = [f"{lat[k]:.2f}" if lat else "" for k in ("p50", "p90", "p99", "max")]
        return f"| {name} | {n} | {failed} | " + " | ".join(cells) + " |"

    print(f"\n{report.requests} requests from {report.clients} clients against {report.url}, "
          f"max_tokens {report.max_tokens}: {s['seconds']:.1f} s, "
          f"{s['requests_per_second']:.2f} requests/s\n", file=out)
    print("| kind | requests | failed | p50 s | p90 s | p99 s | max s |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for kind, k in s["per_kind"].items():
        print(row(kind, k["requests"], k["failed"], k), file=out)
    failed_runs = sum(k["failed"] for k in s["per_kind"].values())
    print(row("**all**", len(report.results), failed_runs, s["latency"]), file=out)
    print(file=out)
    by_type = ", ".join(f"{k} {v}" for k, v in s["failures_by_type"].items()) or "none"
    print(f"- failures: {s['failures']} ({by_type}; warm-up included)", file=out)
    print(f"- 5xx: {s['five_xx']}, of which overloaded (503/529): {s['overloaded']}", file=out)
    print(f"- server RSS: {rss_line(s['rss_mib'])}", file=out)
    if s["rss_timeline_mib"]:
        trend = " ".join(f"{m:.0f}" for m in s["rss_timeline_mib"])
        print(f"- server RSS during the load, 10 points from start to end (MiB): {trend}", file=out)
    if s["server_pids"].get("before") != s["server_pids"].get("after"):
        print(f"- server processes changed during the run: {s['server_pids']}", file=out)
    if report.skipped_kinds:
        print(f"- skipped (SDK not installed): {', '.join(report.skipped_kinds)}", file=out)
    for r in report.failures[:10]:
        where = f"#{r.index}" if r.index >= 0 else "(warm-up)"
        print(f"  - {r.kind} {where}: {r.failure} {r.status or ''} {r.message}", file=out)


# ---------------------------------------------------------------------------- own server


def start_server(threads: int | None) -> tuple[ServerProc, str]:
    """`dmr serve` on a free loopback port with a fresh store (imports the bundled model)."""
    store = tempfile.mkdtemp(prefix="load-store-")
    port = free_port()
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--models-dir", store]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        return ServerProc("load", cmd, port, "/health"), store
    except Exception:
        shutil.rmtree(store, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    """Command line: start a server unless --url, run, print, exit 1 on failures or 5xx."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, help="requests to send (default 500)")
    parser.add_argument("--clients", type=int, help="concurrent client threads (default 32)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['requests']} requests from {QUICK['clients']} clients")
    parser.add_argument("--url", help="an already-running server, e.g. http://127.0.0.1:12434")
    parser.add_argument("--pid", type=int, help="server process to read RSS from "
                        "(default: whatever listens on --url's loopback port)")
    parser.add_argument("--threads", type=int,
                        help="llama.cpp threads of the server this starts (default: its own)")
    parser.add_argument("--max-tokens", type=int, default=24,
                        help="answer length cap of every generating request (default 24)")
    parser.add_argument("--model", default=MODEL,
                        help=f"model to ask (default {MODEL}; others need --url and a pull)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    parser.add_argument("--json", help="write the summary (and every failure) here")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else {"requests": 500, "clients": 32}
    n = args.requests or size["requests"]
    clients = args.clients or size["clients"]

    server, store = (None, None) if args.url else start_server(args.threads)
    try:
        url = args.url or server.base
        print(f"load: {n} requests, {clients} clients, {url}"
              + (f" (server log {server.log.name})" if server else ""), flush=True)
        report = run_load(url, n, clients, max_tokens=args.max_tokens, model=args.model,
                          timeout=args.timeout, pid=args.pid or (server and server.proc.pid))
    finally:
        if server:
            server.stop()
            shutil.rmtree(store, ignore_errors=True)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report.summary(), indent=1) + "\n")
    return 0 if report.ok and not report.five_xx else 1


if __name__ == "__main__":
    sys.exit(main())
