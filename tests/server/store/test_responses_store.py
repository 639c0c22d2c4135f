"""The Responses store: persistent, atomic, bounded (count, size, TTL), oldest evicted first,
thread-safe. Unit tests on a temporary directory (the live restart test is in
tests/server/api/test_responses_restart.py)."""

from __future__ import annotations

import json
import threading

import pytest

from server.store import responses_store
from server.store.responses_store import Limits, ResponseStore


def record(i: int, size: int = 0) -> dict:
    return {"response": {"id": f"resp_{i}", "n": i}, "pad": "x" * size}


def test_put_get_delete_and_reopen(tmp_path):
    store = ResponseStore(tmp_path)
    store.put("resp_1", record(1))
    assert store.get("resp_1") == record(1)
    assert "resp_1" in store and store.stats()[0] == 1
    reopened = ResponseStore(tmp_path)
    assert reopened.get("resp_1") == record(1)
    assert reopened.delete("resp_1") and not reopened.delete("resp_1")
    assert reopened.get("resp_1") is None
    assert ResponseStore(tmp_path).get("resp_1") is None


def test_files_are_written_whole_under_the_models_dir(tmp_path):
    store = ResponseStore(tmp_path)
    store.put("resp_a", record(1, 1000))
    files = sorted(p.name for p in (tmp_path / "responses").iterdir())
    assert files == ["resp_a.json"]  # no temporary file left behind
    assert json.loads((tmp_path / "responses" / "resp_a.json").read_text()) == record(1, 1000)


def test_leftovers_of_an_interrupted_write_are_removed_at_start(tmp_path):
    (tmp_path / "responses").mkdir()
    (tmp_path / "responses" / ".tmp-abc").write_text("{half")
    ResponseStore(tmp_path)
    assert not (tmp_path / "responses" / ".tmp-abc").exists()


def test_count_bound_evicts_the_oldest_also_after_a_restart(tmp_path):
    store = ResponseStore(tmp_path, Limits(max_count=3, max_bytes=0, ttl_seconds=0))
    for i in range(5):
        store.put(f"resp_{i}", record(i))
    assert [store.get(f"resp_{i}") is not None for i in range(5)] == [False, False, True, True,
                                                                       True]
    assert len(list((tmp_path / "responses").iterdir())) == 3
    smaller = ResponseStore(tmp_path, Limits(max_count=2, max_bytes=0, ttl_seconds=0))
    assert smaller.oldest() == "resp_3" and smaller.stats()[0] == 2


def test_size_bound_evicts_the_oldest(tmp_path):
    one = len(json.dumps(record(0, 1000), separators=(",", ":")))
    store = ResponseStore(tmp_path, Limits(max_count=0, max_bytes=int(one * 2.5), ttl_seconds=0))
    for i in range(4):
        store.put(f"resp_{i}", record(i, 1000))
    count, size = store.stats()
    assert count == 2 and size <= one * 2.5
    assert store.get("resp_1") is None and store.get("resp_3") is not None


def test_a_record_larger_than_the_whole_store_is_not_kept(tmp_path):
    store = ResponseStore(tmp_path, Limits(max_count=0, max_bytes=100, ttl_seconds=0))
    assert store.put("resp_big", record(0, 1000)) is False
    assert store.get("resp_big") is None


def test_ttl_expires_records(tmp_path, monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(responses_store.time, "time", lambda: now[0])
    store = ResponseStore(tmp_path, Limits(ttl_seconds=60))
    store.put("resp_old", record(0))
    now[0] += 30
    store.put("resp_new", record(1))
    now[0] += 45
    assert store.get("resp_old") is None and store.get("resp_new") is not None
    assert not (tmp_path / "responses" / "resp_old.json").exists()


def test_ids_that_could_name_other_paths_are_refused(tmp_path):
    store = ResponseStore(tmp_path)
    for bad in ("../x", "a/b", "", "x" * 200):
        assert store.get(bad) is None and not store.delete(bad)
        with pytest.raises(ValueError):
            store.put(bad, record(0))


def test_corrupt_file_reads_as_missing(tmp_path):
    store = ResponseStore(tmp_path)
    store.put("resp_1", record(1))
    (tmp_path / "responses" / "resp_1.json").write_text("{not json")
    assert store.get("resp_1") is None and "resp_1" not in store


def test_concurrent_writers_keep_the_index_and_the_files_in_step(tmp_path):
    store = ResponseStore(tmp_path, Limits(max_count=50, max_bytes=0, ttl_seconds=0))

    def writer(t: int) -> None:
        for i in range(40):
            store.put(f"resp_{t}_{i}", record(i, 50))
            store.get(f"resp_{t}_{i // 2}")

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    count, size = store.stats()
    files = list((tmp_path / "responses").glob("*.json"))
    assert count == 50 == len(files)
    assert size == sum(f.stat().st_size for f in files)
    assert not list((tmp_path / "responses").glob(".tmp-*"))


def test_settings_bound_the_store(monkeypatch, tmp_path):
    from server.config import Settings

    monkeypatch.setenv("DMR_RESPONSES_MAX_COUNT", "7")
    monkeypatch.setenv("DMR_RESPONSES_MAX_BYTES", "4096")
    monkeypatch.setenv("DMR_RESPONSES_TTL", "1h30m")
    settings = Settings.load(models_dir=tmp_path)
    assert (settings.responses_max_count, settings.responses_max_bytes,
            settings.responses_ttl) == (7, 4096, 5400.0)
    defaults = Settings()
    assert defaults.responses_max_count == 10_000 and defaults.responses_ttl == 30 * 24 * 3600
