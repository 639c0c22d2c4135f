"""Real upstreams for the remote engine: two of our own servers (one thread each, a small
context and two slots, so they share the machine's cores) and a front server whose remote
engine `vllm` forwards to them, configured as a user would (DMR_ENGINE_VLLM)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.conftest import ServerProcess

UPSTREAM_KEY = "up-secret"
UPSTREAM_ENV = {"DMR_THREADS": "1", "DMR_CONTEXT_SIZE": "1024", "DMR_PARALLEL": "2",
                "DMR_KEEP_ALIVE": "-1", "DMR_API_KEYS": UPSTREAM_KEY}


class Fleet:
    """Upstreams (restartable on their port) and front servers, stopped together."""

    def __init__(self, base: Path):
        self.base = base
        self.upstreams: list[ServerProcess] = []
        self.fronts: list[ServerProcess] = []
        self._runs = 0

    def start_upstream(self, index: int | None = None) -> ServerProcess:
        """A new upstream, or (index) the one at that place again, on its old port."""
        self._runs += 1
        number = len(self.upstreams) if index is None else index
        port = None if index is None else self.upstreams[index].port
        server = ServerProcess(self.base / f"up{number}", self.base / f"up{number}-{self._runs}.log",
                               env=UPSTREAM_ENV, port=port)
        if index is None:
            self.upstreams.append(server)
        else:
            self.upstreams[index] = server
        return server

    def urls(self) -> str:
        return ",".join(f"{u.url}/engines/v1" for u in self.upstreams)

    def start_front(self, extra_yaml: str = "", env: dict[str, str] | None = None
                    ) -> ServerProcess:
        n = len(self.fronts)
        config = self.base / f"front{n}.yaml"
        config.write_text("import_default_model: false\n"
                          "engines:\n  vllm:\n    upstreams: [http://unused.invalid/v1]\n"
                          "    api_key_env: UPSTREAM_KEY\n    health_interval: 1s\n"
                          "    cooldown: 1s\n" + extra_yaml)
        front = ServerProcess(self.base / f"front{n}", self.base / f"front{n}.log",
                              "--config", str(config),
                              env={"DMR_THREADS": "1", "DMR_ENGINE_VLLM": self.urls(),
                                   "UPSTREAM_KEY": UPSTREAM_KEY, **(env or {})})
        self.fronts.append(front)
        front.wait_ready()
        return front

    def stop(self) -> None:
        for server in self.fronts + self.upstreams:
            server.stop()


def upstream_state(front_url: str, headers: dict | None = None) -> dict[str, dict]:
    status = requests.get(front_url + "/engines/remote", headers=headers, timeout=10).json()
    return {u["url"]: u for u in status["vllm"]["upstreams"]}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Fleet:
    fleet = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        for _ in range(2):
            fleet.start_upstream()
        for upstream in fleet.upstreams:
            upstream.wait_ready()
        yield fleet
    finally:
        fleet.stop()
