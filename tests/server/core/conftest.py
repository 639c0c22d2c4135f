"""In-process apps on the fake engine (server/engines/fake.py), for fast tests of the core."""

from __future__ import annotations

import pytest

from server.app import create_app
from server.config import Settings
from server.engines.fake import FakeEngine
from server.store.store import ModelStore
from tests.server.dmr_fixtures import tiny_gguf

FAKE_MODEL = "ai/fake"


@pytest.fixture
def make_app(tmp_path):
    """make_app(script, n_ctx=512, end="stop") -> (test client, engine): an app whose store holds
    ai/fake (a tiny GGUF the fake engine never reads) and whose llama.cpp is the fake."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(tiny_gguf())
    ModelStore(tmp_path / "models").add_gguf(gguf, [FAKE_MODEL])
    apps = []

    def make(script=("Hello", "!"), n_ctx: int = 512, end: str = "stop"):
        engine = FakeEngine(script, n_ctx=n_ctx, end=end)
        app = create_app(Settings(models_dir=tmp_path / "models", import_default_model=False,
                                  keep_alive=-1), engines={"llama.cpp": engine})
        apps.append(app)
        return app.test_client(), engine

    yield make
    for app in apps:
        app.extensions["dmr"].runtime.close()
