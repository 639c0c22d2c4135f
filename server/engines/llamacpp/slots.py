"""The slot table: which llama.cpp sequence a new prompt runs in, and which KV cells it
starts from.

A prompt starts from the longest cached prefix of it, wherever that is: its own slot (a
follow-up turn), another slot (a shared system prompt: the cells are copied), or the prompt
cache beyond the slots (prompt_cache.py: the state is restored). Before a slot's cells are
dropped for another prompt, their state goes to the prompt cache. Choices of one request
(n > 1) prefill their prompt once: the first prefills it, the others wait, then take a copy
of its cells and sample from its logits.

With a KV cache per slot (the default), cells move between slots as sequence states
(`llama_state_seq_get_data` / `set_data`): only the cells in use are copied, at once.
llama.cpp's own cross-stream `llama_memory_seq_cp` copies a slot's whole buffer (n_ctx cells)
at the next decode. In a unified cache a copy only tags cells.
"""

from __future__ import annotations

import ctypes
import logging
import time
from typing import Any

import llama_cpp as L

from .prompt_cache import MIN_TOKENS, PromptCache
from .sequence import Sequence, Slot, lcp

log = logging.getLogger(__name__)


def read_state(ctx: Any, seq_id: int) -> bytearray | None:
    """One sequence's KV cells as a state blob, or None when it holds none."""
    size = L.llama_state_seq_get_size(ctx, seq_id)
    if not size:
        return None
    data = bytearray(size)
    n = L.llama_state_seq_get_data(ctx, (ctypes.c_uint8 * size).from_buffer(data), size, seq_id)
    if n != size:
        return None
    return data


def write_state(ctx: Any, seq_id: int, data: bytearray) -> bool:
    """Replace a sequence's cells with a saved state; False (cells cleared) when llama.cpp
    refuses it (another layout, damaged, no room)."""
    size = len(data)
    buf = (ctypes.c_uint8 * size).from_buffer(data)
    return L.llama_state_seq_set_data(ctx, buf, size, seq_id) == size


class Slots:
    def __init__(self, ctx: Any, parallel: int, *, unified: bool, kv_tokens: int,
                 cache: PromptCache | None):
        self._ctx = ctx
        self._mem = L.llama_get_memory(ctx)
        self.all = [Slot(i) for i in range(parallel)]
        self._unified = unified
        self._kv_tokens = kv_tokens
        self.cache = cache

    def busy(self) -> list[Slot]:
        return [s for s in self.all if s.sequence is not None]

    def cached_tokens(self) -> int:
        return sum(len(s.cache) for s in self.all)

    # ------------------------------------------------------------------ admission

    def place(self, seq: Sequence) -> bool:
        """Give `seq` a free slot holding the longest cached prefix of its prompt. False when
        there is no free slot, or no room in a unified cache until a running sequence ends."""
        free = [s for s in self.all if s.sequence is None]
        if not free:
            return False
        prompt = seq.job.prompt
        leader = self._leader_for(seq)
        lcps = {s.seq_id: lcp(s.cache, prompt) for s in self.all}
        slot = max(free, key=lambda s: (lcps[s.seq_id] == len(s.cache), lcps[s.seq_id],
                                        -s.last_used))
        if leader is not None:
            self._forget(slot, 0)
            self._bind(seq, slot, 0)
            seq.leader = leader
            leader.followers.append(seq)
            return True
        source = max(self.all, key=lambda s: lcps[s.seq_id])
        best = max(lcps[slot.seq_id], lcps[source.seq_id])
        hit = self.cache.lookup(prompt, best) if self.cache is not None else None
        reuse = hit[1] if hit else best
        keep = min(reuse, len(prompt) - 1)
        # A restore briefly holds all of the entry's cells, then the prompt's.
        needed = (max(len(hit[0].tokens), len(prompt)) if hit else len(prompt) - keep) + 1
        if not self._make_room(needed, spare=(slot, source)):
            return False
        if not (hit and self._restore(slot, hit[0], keep)):
            if hit:  # refused: the slot's cells are gone, other slots still count
                lcps[slot.seq_id] = 0
            if source is not slot and lcps[source.seq_id] > lcps[slot.seq_id]:
                keep = min(lcps[source.seq_id], len(prompt) - 1)
                self._forget(slot, 0)
                keep = self.copy_prefix(source, slot, keep)
            else:
                keep = min(lcps[slot.seq_id], len(prompt) - 1)
                self._forget(slot, keep)
        self._bind(seq, slot, keep)
        return True

    def _leader_for(self, seq: Sequence) -> Sequence | None:
        """A running sequence still prefilling exactly this prompt (another choice of the
        same request): `seq` can share its prefill instead of repeating it."""
        prompt = seq.job.prompt
        for slot in self.all:
            other = slot.sequence
            if (other is not None and other.leader is None and other.prefilling
                    and other.pending is None and len(other.job.prompt) == len(prompt)
                    and other.job.prompt == prompt):
                return other
        return None

    @staticmethod
    def _bind(seq: Sequence, slot: Slot, keep: int) -> None:
        slot.sequence, seq.slot = seq, slot
        seq.prefill_pos = seq.n_past = keep
        if seq.cached_tokens is None:  # a preempted sequence keeps its first figure
            seq.cached_tokens = keep
            seq.t_admitted = time.monotonic()

    def _restore(self, slot: Slot, entry, keep: int) -> bool:
        """Bring a prompt-cache entry into `slot`, cut to its first `keep` tokens."""
        self._forget(slot, 0)
        data = self.cache.take(entry, keep)
        if data is None or not write_state(self._ctx, slot.seq_id, data):
            if data is not None:
                log.warning("prompt cache: llama.cpp refused a cached state; prefilling instead")
            L.llama_memory_seq_rm(self._mem, slot.seq_id, 0, -1)
            return False
        L.llama_memory_seq_rm(self._mem, slot.seq_id, keep, -1)
        slot.cache = entry.tokens[:keep]
        self.cache.stats.restored_tokens += keep
        return True

    def _forget(self, slot: Slot, keep: int) -> None:
        """Drop `slot`'s cells past `keep`, first saving them to the prompt cache when a
        worthwhile part of them would be lost."""
        if len(slot.cache) - keep >= MIN_TOKENS:
            self.save(slot)
        L.llama_memory_seq_rm(self._mem, slot.seq_id, keep, -1)
        del slot.cache[keep:]

    def save(self, slot: Slot) -> None:
        if self.cache is None or len(slot.cache) < MIN_TOKENS:
            return
        data = read_state(self._ctx, slot.seq_id)
        if data is not None:
            self.cache.add(list(slot.cache), data)

    def copy_prefix(self, source: Slot, target: Slot, length: int) -> int:
        """Give `target` (emptied) the first `length` cached tokens of `source`; returns how
        many it got (0 when llama.cpp refused the copy)."""
        if self._unified:
            L.llama_memory_seq_cp(self._mem, source.seq_id, target.seq_id, 0, length)
        else:
            data = read_state(self._ctx, source.seq_id)
            if data is None or not write_state(self._ctx, target.seq_id, data):
                L.llama_memory_seq_rm(self._mem, target.seq_id, 0, -1)
                target.cache = []
                return 0
            L.llama_memory_seq_rm(self._mem, target.seq_id, length, -1)
        target.cache = source.cache[:length]
        return length

    def adopt(self, leader: Sequence) -> list[Sequence]:
        """The leader's prompt is in its cells: copy them to each waiting follower."""
        followers, leader.followers = leader.followers, []
        n = len(leader.job.prompt)
        data = None if self._unified else read_state(self._ctx, leader.slot.seq_id)
        for follower in followers:
            follower.leader = None
            slot = follower.slot
            if self._unified:
                L.llama_memory_seq_cp(self._mem, leader.slot.seq_id, slot.seq_id, 0, n)
            elif data is None or not write_state(self._ctx, slot.seq_id, data):
                L.llama_memory_seq_rm(self._mem, slot.seq_id, 0, -1)
                continue  # it prefills on its own
            L.llama_memory_seq_rm(self._mem, slot.seq_id, n, -1)
            slot.cache = list(leader.job.prompt)
            follower.prefill_pos = follower.n_past = n
            follower.cached_tokens = leader.cached_tokens
        return [f for f in followers if not f.prefilling]

    @staticmethod
    def detach(seq: Sequence) -> None:
        """`seq` ends or is preempted: its followers prefill on their own."""
        for follower in seq.followers:
            follower.leader = None
        seq.followers = []
        if seq.leader is not None and seq in seq.leader.followers:
            seq.leader.followers.remove(seq)
        seq.leader = None

    # ------------------------------------------------------------------ a unified cache's room

    def _own_cells(self, slot: Slot) -> int:
        """Cached tokens of `slot` that no other slot's cached prefix shares."""
        shared = max((lcp(slot.cache, o.cache) for o in self.all if o is not slot), default=0)
        return len(slot.cache) - shared

    def _make_room(self, needed: int, spare: tuple[Slot, ...]) -> bool:
        """Free KV cells for `needed` more tokens by forgetting idle slots' cached prefixes
        (least recently used first, never those in `spare`). False when only running
        sequences hold the cells; a sequence with the cache to itself is always admitted."""
        if not self._unified:
            return True  # each slot has a context's worth of cells of its own
        # Counting every slot's tokens overcounts cells shared by copied prefixes: this errs
        # on the side of admitting less.
        used = self.cached_tokens()
        idle = sorted((s for s in self.all if s.sequence is None and s.cache
                       and s not in spare), key=lambda s: s.last_used)
        while used + needed > self._kv_tokens and idle:
            slot = idle.pop(0)
            used -= len(slot.cache)
            self.clear(slot)
        return used + needed <= self._kv_tokens or not self.busy()

    def evict_idle(self) -> bool:
        """The cache is full: forget the least recently used idle slot that has cells of its
        own (saving them). False when there is none."""
        idle = [s for s in self.all if s.sequence is None and self._own_cells(s)]
        if not idle:
            return False
        self.clear(min(idle, key=lambda s: s.last_used))
        return True

    def clear(self, slot: Slot) -> None:
        self.save(slot)
        L.llama_memory_seq_rm(self._mem, slot.seq_id, 0, -1)
        slot.cache.clear()

    def persist(self) -> None:
        """The model unloads: every slot's cells to the prompt cache, and it to disk."""
        if self.cache is None:
            return
        for slot in sorted(self.all, key=lambda s: s.last_used):
            self.save(slot)
        self.cache.persist()
