"""Fixtures for the model-store tests: a real OCI registry and a server of our own.

The store tests pull, tag, delete and configure, so they use their own `dmr serve` (not the
shared session server) on a models directory nobody else looks at. That server starts with an
empty store (no bundled model), so pulling the real model from the registry really transfers it.
"""

from __future__ import annotations

import pytest
import requests

from server.store.bundled import bundled_gguf
from tests.conftest import ServerProcess
from tests.server.dmr_fixtures import RegistryProcess, push_dmr_gguf


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> RegistryProcess:
    registry = RegistryProcess(tmp_path_factory.mktemp("registry"))
    yield registry
    registry.stop()


class StoreServer:
    """A restartable `dmr serve` on its own models directory."""

    def __init__(self, base):
        self.base = base
        self.models_dir = base / "models"
        self.runs = 0
        self.server: ServerProcess | None = None
        self.start()

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.runs += 1
        config = self.base / "server.yaml"
        config.write_text("import_default_model: false\n")
        self.server = ServerProcess(self.models_dir, self.base / f"server-{self.runs}.log",
                                    "--config", str(config))
        self.server.wait_ready()

    def restart(self) -> None:
        self.server.stop()
        self.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope="session")
def store_server(tmp_path_factory) -> StoreServer:
    server = StoreServer(tmp_path_factory.mktemp("store-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry_model(registry) -> str:
    """The bundled SmolLM2 GGUF pushed to the test registry in DMR's layout (once)."""
    push_dmr_gguf(registry.url, "test/smollm2", "v1", bundled_gguf().read_bytes())
    return f"{registry.host}/test/smollm2:v1"


def ensure_pulled(url: str, ref: str) -> None:
    if requests.get(f"{url}/models/{ref}").status_code != 200:
        lines = requests.post(f"{url}/models/create", json={"from": ref},
                              headers={"Accept": "application/json"}).text.splitlines()
        assert lines and '"success"' in lines[-1], lines[-3:]
