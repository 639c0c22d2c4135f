"""One run of the pipeline: its event stream, and the cleanup that frees the model.

A run's generation has started before its first event is read; closing it (at the end of
iteration, on an error, or when the client goes) cancels its sequences and releases the lease.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .runtime import Lease, Runtime
from .types import Event


class EventStream:
    """The events of one run. close() cancels its sequences and releases the model, whether
    or not iteration ever started (a client may disconnect before the first event); it runs
    once, by the end of iteration, an error, or an explicit close."""

    def __init__(self, events: Iterator[Event], cleanup: Callable[[], None]):
        self._events = events
        self._cleanup = cleanup
        self._closed = False
        self._lock = threading.Lock()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        try:
            return next(self._events)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._events.close()
        except ValueError:
            pass  # being iterated on another thread (a heartbeat pump): the cleanup stops it
        finally:
            self._cleanup()


def releaser(runtime: Runtime, lease: Lease, streams: list) -> Callable[[], None]:
    def cleanup() -> None:
        for stream in streams:
            stream.close()
        runtime.release(lease)

    return cleanup


@dataclass
class Run:
    """A validated request whose generation has started; iterate `events` exactly once and
    close() it when done (closing is what frees the model's slots)."""

    model: str
    prompt_tokens: int
    events: EventStream

    def close(self) -> None:
        self.events.close()
