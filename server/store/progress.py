"""Progress of a pull or push as dialect-free events.

Pulls and pushes yield these; each HTTP dialect formats them its own way (DMR's JSON lines,
Ollama's NDJSON statuses) and the CLI draws bars from DMR's lines. Byte progress is throttled as
DMR throttles it: at most one event per 100 ms or per MiB for a layer, plus its last byte.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

PULL, PUSH = "pull", "push"
_INTERVAL = 0.1
_MIN_BYTES = 1 << 20


@dataclass(frozen=True)
class LayerProgress:
    mode: str  # "pull" or "push"
    total: int  # bytes of the whole model
    layer: str  # the layer's digest
    layer_size: int
    current: int  # bytes of this layer transferred so far (resumed bytes included)


@dataclass(frozen=True)
class Notice:
    """A human-readable line: kind is "success", "warning" or "error"."""

    kind: str
    message: str
    mode: str = PULL


Event = LayerProgress | Notice


class Throttle:
    """Decides which byte counts of one layer are worth an event."""

    def __init__(self, size: int):
        self.size = size
        self._last_time = 0.0
        self._last_bytes = -1

    def due(self, current: int) -> bool:
        now = time.monotonic()
        if (current == self.size or now - self._last_time >= _INTERVAL
                or current - self._last_bytes >= _MIN_BYTES):
            self._last_time, self._last_bytes = now, current
            return True
        return False
