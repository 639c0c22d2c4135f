"""The prompt cache's disk and RAM bookkeeping, without a model (fast).

The end-to-end behaviour (a real model's KV states restored after a slot was reused and after
a restart) is in test_prompt_cache.py.
"""

from __future__ import annotations

import os

from server.engines.llamacpp.prompt_cache import MIN_TOKENS, PromptCache
from server.engines.llamacpp.prompt_spill import SpillDir, name_of

TOKENS = list(range(100, 100 + MIN_TOKENS * 2))


def test_a_written_state_reads_back_after_reopening(tmp_path):
    spill = SpillDir(tmp_path, 1 << 20)
    spill.write(TOKENS, bytearray(b"state" * 100))
    again = SpillDir(tmp_path, 1 << 20)
    [entry] = again.entries.values()
    assert entry.tokens == TOKENS
    assert bytes(again.read(entry)) == b"state" * 100


def test_torn_and_damaged_files_are_removed_not_restored(tmp_path):
    spill = SpillDir(tmp_path, 1 << 20)
    good = spill.write(TOKENS, bytearray(b"a" * 1000))
    torn = spill.write(TOKENS[:-1], bytearray(b"b" * 1000))
    flipped = spill.write(TOKENS[:-2] + [7], bytearray(b"c" * 1000))
    with open(torn.path, "r+b") as fh:  # a write cut short: the file is shorter than it says
        fh.truncate(torn.file_bytes - 100)
    with open(flipped.path, "r+b") as fh:  # same length, one byte changed: the checksum
        fh.seek(flipped.file_bytes - 50)
        fh.write(b"X")
    (tmp_path / (name_of(TOKENS) + ".tmp-123")).write_bytes(b"half a file")  # interrupted
    (tmp_path / "0000.kv").write_bytes(b"not a cache file at all")
    reopened = SpillDir(tmp_path, 1 << 20)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert torn.path.name not in names and "0000.kv" not in names
    assert not any(".tmp-" in n for n in names)
    entries = {e.path.name: e for e in reopened.entries.values()}
    assert reopened.read(entries[good.path.name]) == bytearray(b"a" * 1000)
    assert reopened.read(entries[flipped.path.name]) is None  # checksum: refused and deleted
    assert not flipped.path.exists()


def test_the_directory_stays_within_its_bound_least_recently_used_first(tmp_path):
    size = 10_000
    spill = SpillDir(tmp_path, 3 * size)
    first = spill.write([1] * 40 + [2], bytearray(size))
    second = spill.write([1] * 40 + [3], bytearray(size))
    os.utime(first.path, (1, 1))
    first.used = 1  # least recently used
    spill.write([1] * 40 + [4], bytearray(size))
    assert not first.path.exists() and second.path.exists()
    assert spill.total() <= 3 * size


def test_a_longer_prompt_replaces_its_prefixes(tmp_path):
    spill = SpillDir(tmp_path, 1 << 20)
    short = spill.write(TOKENS[:MIN_TOKENS], bytearray(10))
    spill.write(TOKENS, bytearray(20))
    assert not short.path.exists() and len(spill.entries) == 1


def test_ram_cache_finds_the_longest_prefix_and_spills_what_it_evicts(tmp_path):
    cache = PromptCache(3000, SpillDir(tmp_path, 1 << 20))
    a, b = TOKENS, [5] * len(TOKENS)
    cache.add(a, bytearray(b"A" * 1000))
    cache.add(b, bytearray(b"B" * 1000))
    entry, n = cache.lookup(a + [1, 2, 3], better_than=0)
    assert entry.tokens == a and n == len(a)
    assert cache.lookup(a[:10], better_than=0) is None  # too short to be worth it
    assert cache.lookup(a, better_than=len(a) - 3) is None  # a slot offers nearly as much
    cache.add([9] * len(TOKENS), bytearray(b"C" * 1500))  # over 3000 bytes: LRU `b` leaves
    cache.persist()  # waits for the spill thread
    assert cache.snapshot().spilled >= 1
    assert {tuple(e.tokens) for e in SpillDir(tmp_path, 1 << 20).entries.values()} >= {tuple(b)}


def test_a_restored_entry_leaves_ram_when_the_slot_holds_all_of_it():
    cache = PromptCache(1 << 20)
    cache.add(TOKENS, bytearray(b"x" * 100))
    entry, n = cache.lookup(TOKENS + [1], better_than=0)
    assert cache.take(entry, n) == bytearray(b"x" * 100)
    assert cache.snapshot().entries == 0  # the slot's cells are the copy now


def test_other_models_caches_are_bounded_oldest_first(tmp_path):
    from server.engines.llamacpp.prompt_spill import prune_siblings

    for i, age in enumerate((300, 200, 100)):  # three other models' caches, 10 kB each
        d = tmp_path / f"model-{i}"
        d.mkdir()
        f = d / "x.kv"
        f.write_bytes(bytes(10_000))
        os.utime(f, (f.stat().st_mtime - age,) * 2)
    own = tmp_path / "loading"
    own.mkdir()
    (own / "y.kv").write_bytes(bytes(50_000))
    prune_siblings(own, 25_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loading", "model-1", "model-2"]
