"""What one server process holds, reachable from any request through `current()`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import current_app

from .config import Settings
from .core.runtime import Runtime
from .store.store import ModelStore


@dataclass
class State:
    settings: Settings
    store: ModelStore
    runtime: Runtime
    started_at: float = field(default_factory=time.time)


def current() -> State:
    return current_app.extensions["dmr"]
