"""The core budget: llama.cpp threads of every model together never exceed the cores.

Oversubscribed llama.cpp threads spin against each other and collapse throughput ~50x
(measured: 2 processes x 2 threads on 2 cores). Each model runs in its own runner process,
so a thread lock is not enough: the budget is one lock file per core in a directory the
server owns, taken with flock(2) around every decode. A runner with `threads` threads holds
that many core locks while it decodes. The kernel drops a dead runner's locks, so a crash
can never leak the budget.

Deadlock-free: a runner that needs every core takes the locks in order; one that needs fewer
takes any free ones without waiting, and when it must wait, it waits for one lock while
holding none (so a single-thread runner never holds one lock and waits for another).
"""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from pathlib import Path


class ThreadBudget:
    """In-process models (`runner: inprocess`): one decode at a time in this process."""

    _lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc) -> None:
        self._lock.release()


class CoreBudget:
    """Cross-process: hold `threads` of the `cores` core locks in `directory` per decode."""

    def __init__(self, directory: str | os.PathLike, cores: int, threads: int):
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self._fds = [os.open(path / f"core-{i}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                     for i in range(max(1, cores))]
        self.threads = max(1, min(threads, len(self._fds)))
        self._held: list[int] = []
        #: Seconds spent waiting for the budget (another model was decoding).
        self.waited = 0.0

    def __enter__(self) -> None:
        started = time.monotonic()
        if self.threads == len(self._fds):
            for fd in self._fds:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._held = list(self._fds)
        else:
            self._held = self._take_some()
        self.waited += time.monotonic() - started

    def _take_some(self) -> list[int]:
        while True:
            held = []
            for fd in self._fds:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                held.append(fd)
                if len(held) == self.threads:
                    return held
            for fd in held:  # not enough free: wait for one while holding none
                fcntl.flock(fd, fcntl.LOCK_UN)
            fd = random.choice(self._fds)
            fcntl.flock(fd, fcntl.LOCK_EX)
            fcntl.flock(fd, fcntl.LOCK_UN)

    def __exit__(self, *exc) -> None:
        for fd in reversed(self._held):
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._held = []

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
