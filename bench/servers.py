"""The servers bench/run.py compares: how each is started, and the memory of its processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

CORES = os.cpu_count() or 1
#: Threads of every llama.cpp server here: ours reads DMR_THREADS itself, the others get it.
THREADS = int(os.environ.get("DMR_THREADS") or CORES)
MODEL = "ai/smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
    return out


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ServerProc:
    def __init__(self, name: str, cmd: list[str], port: int, health: str, env=None,
                 cwd: str | None = None):
        self.name, self.port = name, port
        self.base = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log",
                                               delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True,
                                     cwd=cwd)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.log.name}")
            try:
                if requests.get(self.base + health, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not start; see {self.log.name}")

    def rss_mib(self) -> float:
        """RSS of the whole process tree: Gunicorn, its worker and each model's runner."""
        return sum(rss_kib(pid) for pid in tree(self.proc.pid)) / 1024

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def start_ours(gguf: Path, store: str) -> ServerProc:
    return start_ours_env(store, {})


def start_ours_env(store: str, env: dict[str, str]) -> ServerProc:
    port = free_port()
    cmd = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--models-dir", store]
    return ServerProc("ours", cmd, port, "/health", env=env)


def start_llama_cpp_python(gguf: Path) -> ServerProc:
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
           "--host", "127.0.0.1", "--n_ctx", "4096", "--n_threads", str(THREADS),
           "--n_threads_batch", str(THREADS), "--model_alias", MODEL,
           "--interrupt_requests", "False"]
    return ServerProc("llama_cpp.server", cmd, port, "/v1/models")


def llama_server_flags() -> list[str]:
    """--no-repack where llama.cpp's AMX/repack kernels crash (engines/cpu.py says so)."""
    from server.engines import cpu

    return ["--no-repack"] if cpu.read_cpu().has_amx else []


def start_llama_server(binary: str, gguf: Path, extra: list[str] | None = None) -> ServerProc:
    port = free_port()
    cmd = [binary, "-m", str(gguf), "--port", str(port), "--host", "127.0.0.1", "-np", "8",
           "-c", str(4096 * 8), "-t", str(THREADS), "--alias", MODEL, *llama_server_flags(),
           *(extra or [])]
    return ServerProc("llama-server", cmd, port, "/health")
