"""The prompt cache beyond the slots: KV states of prefixes the slots had to drop.

A slot holds one prompt's KV cells. When conversations outnumber slots, the slot of an idle
conversation is reused for another one, and its next turn would prefill everything again
(2.6 s for 600 tokens on this machine, against 0.1 s for the new turn alone). So before a
slot's cells are dropped, their state (`llama_state_seq_get_data`, ~23 KiB per token for
SmolLM2) goes into this cache, keyed by the slot's tokens; a new prompt whose longest match
is here rather than in a slot gets the state restored into its slot, and only the rest is
prefilled, as llama-server's `--cache-ram` does.

Host RAM, least recently used first out, bounded in bytes (`prompt_cache_mib`). With a
spill directory (prompt_spill.py) an entry pushed out of RAM, and every entry and slot when
the model unloads, is written to disk on a background thread, so the next runner (after an
idle unload or a server restart) starts warm.

Thread-safety: the scheduler thread adds, looks up and takes; the spill thread registers
what it has written. One lock guards the indexes.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass

from .prompt_spill import DiskEntry, SpillDir, prune_siblings
from .sequence import lcp

log = logging.getLogger(__name__)

#: Prompts shorter than this are not worth an entry (a prefill of them is cheap).
MIN_TOKENS = 32
#: A cached state is restored only when it covers this many more tokens than a slot does.
MIN_GAIN = 16
#: Seconds an unload may spend writing RAM entries to disk.
PERSIST_SECONDS = 10.0


@dataclass
class Entry:
    tokens: list[int]
    data: bytearray | None  # the state, when in RAM
    disk: DiskEntry | None = None
    used: int = 0  # LRU clock


@dataclass
class CacheStats:
    entries: int = 0
    bytes: int = 0
    disk_entries: int = 0
    disk_bytes: int = 0
    hits: int = 0  # restores from RAM
    disk_hits: int = 0  # restores from disk
    restored_tokens: int = 0
    saved: int = 0
    spilled: int = 0


class PromptCache:
    def __init__(self, max_bytes: int, spill: SpillDir | None = None):
        self.max_bytes = max_bytes
        self.spill = spill
        self._ram: list[Entry] = []
        self._disk: dict[str, Entry] = {}  # file name -> entry that is on disk (maybe also RAM)
        self._clock = 0
        self._lock = threading.Lock()
        self.stats = CacheStats()
        self._writes: queue.Queue | None = None
        self._deadline = math.inf
        self._writer: threading.Thread | None = None
        if spill is not None:
            for disk in list(spill.entries.values()):
                self._disk[disk.path.name] = Entry(disk.tokens, None, disk, 0)
            self._writes = queue.Queue()
            self._writer = threading.Thread(target=self._write_loop, name="prompt-spill",
                                            daemon=True)
            self._writer.start()

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def ram_bytes(self) -> int:
        return sum(len(e.data) for e in self._ram if e.data is not None)

    # ------------------------------------------------------------------ lookup and restore

    def lookup(self, prompt: list[int], better_than: int) -> tuple[Entry, int] | None:
        """The entry sharing the longest prefix with `prompt`, if it beats `better_than`
        tokens (what a slot already offers) by MIN_GAIN. RAM is preferred on a tie."""
        best: tuple[Entry, int] | None = None
        with self._lock:
            candidates = self._ram + [e for e in self._disk.values() if e.data is None]
        for entry in candidates:
            n = lcp(entry.tokens, prompt)
            if best is None or n > best[1]:
                best = (entry, n)
        if best is None or best[1] < max(MIN_TOKENS, better_than + MIN_GAIN):
            return None
        return best

    def take(self, entry: Entry, keep: int) -> bytearray | None:
        """The state of `entry`, for a slot that keeps its first `keep` tokens. An entry the
        slot holds whole leaves RAM (the slot's cells are the copy now; they come back here
        when the slot is reused). None when it is gone or its file is damaged."""
        if entry.data is not None:
            data = entry.data
            with self._lock:
                if keep >= len(entry.tokens) - MIN_TOKENS and entry in self._ram:
                    self._ram.remove(entry)
                    entry.data = None  # a copy on disk stays listed
                else:
                    entry.used = self._tick()
            self.stats.hits += 1
            return data
        if entry.disk is None or self.spill is None:
            return None
        data = self.spill.read(entry.disk)
        with self._lock:
            if data is None:
                self._disk.pop(entry.disk.path.name, None)
                return None
        self.stats.disk_hits += 1
        return data

    # ------------------------------------------------------------------ adding

    def add(self, tokens: list[int], data: bytearray) -> bool:
        """Keep a slot's state. Skipped when an entry already holds these tokens or more;
        entries holding a prefix of them are replaced. LRU entries leave RAM for the disk."""
        if len(tokens) < MIN_TOKENS or len(data) > self.max_bytes:
            return False
        evicted: list[Entry] = []
        with self._lock:
            for entry in self._ram:
                if len(entry.tokens) >= len(tokens) and entry.tokens[:len(tokens)] == tokens:
                    entry.used = self._tick()
                    return False
            kept = []
            for entry in self._ram:
                if len(entry.tokens) < len(tokens) and tokens[:len(entry.tokens)] == entry.tokens:
                    entry.data = None  # superseded; a copy on disk stays listed
                else:
                    kept.append(entry)
            self._ram = kept
            self._ram.append(Entry(list(tokens), data, None, self._tick()))
            self.stats.saved += 1
            total = self.ram_bytes()
            while total > self.max_bytes and len(self._ram) > 1:
                victim = min(self._ram, key=lambda e: e.used)
                self._ram.remove(victim)
                total -= len(victim.data)
                evicted.append(victim)
        for victim in evicted:
            self._spill(victim)
        return True

    def _spill(self, entry: Entry) -> None:
        """Send an entry leaving RAM to the disk (unless it is there already)."""
        data, entry.data = entry.data, None
        if self._writes is None or entry.disk is not None or data is None:
            return
        self._writes.put((entry, data))

    def persist(self, seconds: float = PERSIST_SECONDS) -> None:
        """RAM to disk, most recently used first, and wait for it: the model is being
        unloaded. What is not written within `seconds` is dropped (an unload that makes room
        for another model must not wait on gigabytes of writes)."""
        if self._writes is None:
            return
        with self._lock:
            entries, self._ram = self._ram, []
        self._deadline = time.monotonic() + seconds
        for entry in sorted(entries, key=lambda e: -e.used):
            self._spill(entry)
        self._writes.put(None)
        self._writer.join()
        self._writes = None

    def _write_loop(self) -> None:
        while True:
            job = self._writes.get()
            if job is None:
                return
            entry, data = job
            if time.monotonic() > self._deadline:
                continue  # unloading, out of time: the rest stays unwritten
            try:
                disk = self.spill.write(entry.tokens, data)
            except Exception:  # a full disk must never take the model down
                log.exception("prompt cache: spill failed")
                continue
            with self._lock:
                if disk is not None:
                    entry.disk = disk
                    self._disk[disk.path.name] = entry
                    self.stats.spilled += 1
                # the write may have removed files (prefixes of this one, or over the bound)
                on_disk = self.spill.names()
                for name in [n for n in self._disk if n not in on_disk]:
                    self._disk.pop(name)

    def snapshot(self) -> CacheStats:
        with self._lock:
            self.stats.entries = len(self._ram)
            self.stats.bytes = self.ram_bytes()
            on_disk = [e.disk for e in self._disk.values() if e.disk is not None]
        self.stats.disk_entries = len(on_disk)
        self.stats.disk_bytes = sum(d.file_bytes for d in on_disk)
        return self.stats


def open_cache(ram_mib: int, disk_mib: int, directory: str | None) -> PromptCache | None:
    """The cache a model's settings ask for; a disk that cannot be used is logged, not fatal."""
    if ram_mib <= 0:
        return None
    spill = None
    if disk_mib > 0 and directory:
        try:
            prune_siblings(directory, disk_mib << 20)
            spill = SpillDir(directory, disk_mib << 20)
        except OSError as exc:
            log.warning("prompt cache: no disk spill in %s: %s", directory, exc)
    return PromptCache(ram_mib << 20, spill)
