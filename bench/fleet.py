"""Processes for the fleet benchmarks: our servers (restartable on their port, killable with
SIGKILL), llama.cpp's llama-server, a front server with remote engines, the LiteLLM proxy.

Every server gets one llama.cpp thread (the machine has two cores and others use them).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.run import free_port

REPO = Path(__file__).resolve().parents[1]
UPSTREAM_ENV = {"DMR_THREADS": "1", "DMR_CONTEXT_SIZE": "1024", "DMR_PARALLEL": "2",
                "DMR_KEEP_ALIVE": "-1"}
LLAMA_SERVER = Path.home() / ".cache" / "llama-cpp-anchor" / "bin" / "llama-server"


class Proc:
    """A child process in its own session, with its log in `workdir`."""

    def __init__(self, name: str, cmd: list[str], port: int, health: str, workdir: Path,
                 env: dict[str, str] | None = None):
        self.name, self.cmd, self.port, self.health = name, cmd, port, health
        self.url = f"http://127.0.0.1:{port}"
        self.workdir, self.env = workdir, env or {}
        self.runs = 0
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.runs += 1
        log = open(self.workdir / f"{self.name}-{self.runs}.log", "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env}, start_new_session=True,
                                     cwd=self.workdir)
        log.close()

    def wait_ready(self, timeout: float = 180) -> float:
        """Seconds until the health route answers 200."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.workdir}")
            try:
                if requests.get(self.url + self.health, timeout=2).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout} s; see {self.workdir}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the process and its children."""
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                todo += [int(c) for c in task.read_text().split()]
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL the process group: the node dies, nothing drains."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


def ours(name: str, workdir: Path, port: int | None = None, *extra: str,
         env: dict[str, str] | None = None) -> Proc:
    port = port or free_port()
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port",
           str(port), "--models-dir", str(workdir / f"{name}-models"), *extra]
    return Proc(name, cmd, port, "/health", workdir, {**UPSTREAM_ENV, **(env or {})})


def llama_server(workdir: Path, gguf: Path, alias: str) -> Proc | None:
    binary = os.environ.get("LLAMA_SERVER") or str(LLAMA_SERVER)
    if not Path(binary).exists():
        return None
    port = free_port()
    cmd = [binary, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-t", "1",
           "-c", "2048", "-np", "2", "--alias", alias]
    return Proc("llama-server", cmd, port, "/health", workdir)


def front(workdir: Path, engines_yaml: str) -> Proc:
    """Our server with remote engines only (no local model)."""
    config = workdir / "front.yaml"
    config.write_text("import_default_model: false\nengines:\n" + engines_yaml)
    return ours("front", workdir, None, "--config", str(config))


def litellm_proxy(workdir: Path, config_text: str) -> tuple[Proc, str]:
    (workdir / "litellm.yaml").write_text(config_text)
    key = "sk-" + secrets.token_hex(16)
    script = Path(sys.executable).with_name("litellm")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m",
                                                   "litellm.proxy.proxy_cli"]
    port = free_port()
    cmd += ["--config", str(workdir / "litellm.yaml"), "--host", "127.0.0.1", "--port",
            str(port)]
    env = {"LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                       os.environ.get("PYTHONPATH")]))}
    return Proc("litellm", cmd, port, "/health/liveliness", workdir, env), key


_YAML_LINE = re.compile(r"^\s*# (\s*- |\s*[A-Za-z_]+:(\s|$))")


def fleet_config(a: str, b: str) -> str:
    """config.example.yaml with its fleet sections uncommented: `fleet` on servers a and b
    (the example's other models on a), so the documented settings are the tested ones."""
    out, inside = [], False
    for line in (REPO / "config.example.yaml").read_text().splitlines():
        if "# --- fleet" in line:
            inside = True
        elif "# --- end fleet" in line:
            inside = False
        elif inside and _YAML_LINE.match(line):
            line = line.replace("# ", "", 1)
        out.append(line)
    text = "\n".join(out) + "\n"
    return (text.replace("http://gpu-1:12434", a).replace("http://gpu-2:12434", b)
            .replace("http://localhost:12434", a).replace("http://localhost:12435", a))


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench-fleet-"))


def clean(work: Path) -> None:
    """Remove the model stores (copies of the model); the logs stay for a look afterwards."""
    for store in work.glob("*-models"):
        shutil.rmtree(store, ignore_errors=True)
