"""Heartbeats for streamed responses: something to send while the model has nothing yet.

A request can wait for a free slot, or prefill a long prompt on a CPU, for longer than proxies
and clients keep an idle connection open. Iterating the core's events blocks, so a helper
thread drives them and the response thread wakes up every `interval` seconds to send a
keep-alive (Anthropic's `ping`) if no event came.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

#: Yielded in place of an event when none arrived for `interval` seconds.
HEARTBEAT = object()
_END = object()


def with_heartbeats(events: Iterator[T], interval: float) -> Iterator[T | object]:
    """`events`, with HEARTBEAT whenever none arrived for `interval` seconds.

    Exceptions from `events` are re-raised here. Closing this iterator (client gone) makes the
    helper thread close `events` as soon as its next event arrives, which frees the model.
    """
    items: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def pump() -> None:
        try:
            for event in events:
                if stop.is_set():
                    break
                items.put((event, None))
            items.put((_END, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            items.put((_END, exc))
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    threading.Thread(target=pump, name="sse-pump", daemon=True).start()
    try:
        while True:
            try:
                item, exc = items.get(timeout=interval)
            except queue.Empty:
                yield HEARTBEAT
                continue
            if item is _END:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
