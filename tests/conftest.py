"""One real server with the real default model for the whole test session.

The server runs as `python -m server.cli serve` in a subprocess on a free loopback port, with a
fresh model store under pytest's temp dir, so tests see exactly what a new user sees.
Set DMR_THREADS=1 when several test sessions share the machine's two cores.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MODEL = "ai/smollm2"
#: SmolLM2's end-of-generation tokens as a logit_bias that bans them: an answer then runs
#: until a limit (max_tokens, the context, a timeout) stops it.
NO_EOS = {"0": -100, "2": -100}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A `dmr serve` child process and its log file."""

    def __init__(self, models_dir: Path, log_path: Path, *extra_args: str,
                 env: dict[str, str] | None = None, wrapper: list[str] | None = None,
                 port: int | None = None):
        """`wrapper` runs before the server command and must exec it (e.g. `unshare`);
        `port` reuses a known port (a server restarted where its clients expect it)."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [*(wrapper or []), sys.executable, "-m", "server.cli", "serve",
               "--host", "127.0.0.1", "--port", str(self.port), "--models-dir",
               str(models_dir), *extra_args]
        self._log = open(log_path, "wb")
        # A session of its own, so stop() can end the Gunicorn worker with its arbiter.
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a node that dies, no graceful drain."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL to the whole process group: no worker outlives it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def dmr_server(tmp_path_factory) -> ServerProcess:
    base = tmp_path_factory.mktemp("dmr")
    server = ServerProcess(base / "models", base / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_url(dmr_server: ServerProcess) -> str:
    """Root URL of the shared test server, e.g. http://127.0.0.1:40123."""
    return dmr_server.url


@pytest.fixture(scope="session")
def model() -> str:
    return MODEL


@pytest.fixture(scope="session")
def openai_client(server_url: str):
    import openai

    return openai.OpenAI(base_url=server_url + "/engines/v1", api_key="unused", max_retries=0)
