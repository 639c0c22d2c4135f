"""Which models are loaded, on which engine, and for how long.

Models load lazily on first use (concurrent first requests wait for one load), stay loaded while
requests use them, and are unloaded after `keep_alive` idle seconds by a janitor thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..store.store import ModelStore, StoredModel
from .errors import (
    EngineFailure,
    EngineNotFound,
    EngineNotInstalled,
    ModelLoadFailed,
    NotSupported,
)

log = logging.getLogger(__name__)

#: Engines Docker Model Runner knows; a request may name any of them in the URL.
KNOWN_ENGINES = ("llama.cpp", "vllm", "mlx", "sglang", "diffusers")
DEFAULT_ENGINE = "llama.cpp"


def _check_file(stored: StoredModel) -> None:
    """A weights file that is missing or not the size its manifest says was damaged after the
    pull (verified then); say so plainly instead of letting the engine guess."""
    try:
        size = stored.gguf_path.stat().st_size
    except FileNotFoundError:
        raise ModelLoadFailed(stored.name, "its weights file is missing from the store") from None
    if stored.gguf_size and size != stored.gguf_size:
        raise ModelLoadFailed(stored.name, f"its weights file has {size} bytes but should have "
                              f"{stored.gguf_size} (truncated or overwritten)")


@dataclass
class LoadedEntry:
    stored: StoredModel
    engine: str
    model: Any  # engines.base.LoadedModel
    keep_alive: float
    loaded_at: float
    load_seconds: float
    last_used: float = field(default_factory=time.monotonic)
    in_use: int = 0

    def expires_at(self) -> float | None:
        """Wall-clock time at which an idle model will be unloaded; None = never/busy."""
        if self.keep_alive < 0 or self.in_use:
            return None
        return time.time() + max(0.0, self.last_used + self.keep_alive - time.monotonic())


@dataclass
class Lease:
    """A loaded model held for one request; `load_seconds` is 0 when it was already loaded."""

    entry: LoadedEntry
    load_seconds: float

    @property
    def model(self) -> Any:
        return self.entry.model

    @property
    def stored(self) -> StoredModel:
        return self.entry.stored


class Runtime:
    def __init__(self, store: ModelStore, engines: dict[str, Any], *, keep_alive: float,
                 janitor_interval: float = 1.0, configs: Any = None,
                 remotes: dict[str, Any] | None = None):
        self.store = store
        self.engines = engines
        #: Remote engines (engines.remote.RemoteEngine) by name: they forward to upstreams at
        #: the chat level (server/api/remote.py) and never load a model here.
        self.remotes = remotes or {}
        self.keep_alive = keep_alive
        #: Per-model settings from /engines/_configure (store.runner_config.RunnerConfigs).
        self.configs = configs
        self._loaded: dict[tuple[str, str], LoadedEntry] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, str], threading.Lock] = {}
        self._stop = threading.Event()
        self._janitor = threading.Thread(target=self._reap_idle, args=(janitor_interval,),
                                         name="keep-alive", daemon=True)
        self._janitor.start()

    def resolve_engine(self, name: str | None) -> str:
        engine = name or DEFAULT_ENGINE
        if engine in self.engines or engine in self.remotes:
            return engine
        if engine in KNOWN_ENGINES:
            raise EngineNotInstalled(engine)
        raise EngineNotFound(engine)

    @contextmanager
    def use(self, ref: str, engine: str | None = None,
            keep_alive: float | None = None) -> Iterator[Lease]:
        lease = self.acquire(ref, engine, keep_alive)
        try:
            yield lease
        finally:
            self.release(lease)

    def acquire(self, ref: str, engine: str | None = None,
                keep_alive: float | None = None) -> Lease:
        """Load (if needed) and hold the model `ref` names; release() it when done."""
        engine_name = self.resolve_engine(engine)
        if engine_name in self.remotes:
            raise NotSupported(f"{engine_name} is a remote engine: its upstreams serve "
                               "the models, nothing is loaded here")
        stored = self.store.get(ref)
        key = (stored.id, engine_name)
        with self._lock:
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                entry = self._loaded.get(key)
                if entry is not None:
                    entry.in_use += 1
                    if keep_alive is not None:
                        entry.keep_alive = keep_alive
                    return Lease(entry, 0.0)
            started = time.monotonic()
            configured = self.configs.get(stored.id) if self.configs else None
            try:
                # Context size: configured, else packaged, else the engine's default.
                options = {"context_size": stored.config.get("context_size")}
                if configured is not None:
                    options.update(configured.load_options())
                _check_file(stored)
                model = self.engines[engine_name].load(str(stored.gguf_path), **options)
            except ModelLoadFailed as exc:
                log.warning("cannot load %s: %s", stored.name, exc.reason)
                raise ModelLoadFailed(stored.name, exc.reason) from exc
            except EngineFailure:
                raise
            except Exception as exc:
                raise EngineFailure(f"could not load {stored.name}: {exc}") from exc
            seconds = time.monotonic() - started
            log.info("loaded %s on %s in %.2fs", stored.name, engine_name, seconds)
            if keep_alive is None:
                keep_alive = self.keep_alive
                if configured is not None and configured.keep_alive is not None:
                    keep_alive = configured.keep_alive
            entry = LoadedEntry(stored, engine_name, model, keep_alive,
                                time.time(), seconds, in_use=1)
            with self._lock:
                self._loaded[key] = entry
            return Lease(entry, seconds)

    def release(self, lease: Lease) -> None:
        with self._lock:
            lease.entry.in_use -= 1
            lease.entry.last_used = time.monotonic()
        if lease.entry.keep_alive == 0:
            self._reap_once()

    def loaded(self) -> list[LoadedEntry]:
        with self._lock:
            return list(self._loaded.values())

    def unload(self, model_id: str | None = None, *, only_idle: bool = True) -> int:
        """Unload one model (by store ID) or all; returns how many were unloaded."""
        with self._lock:
            victims = [
                (k, e) for k, e in self._loaded.items()
                if (model_id is None or k[0] == model_id)
                and not (only_idle and (e.in_use or e.model.busy()))
            ]
            for k, _ in victims:
                del self._loaded[k]
        for _, entry in victims:
            entry.model.unload()
            log.info("unloaded %s", entry.stored.name)
        return len(victims)

    def close(self) -> None:
        self._stop.set()
        self.unload(only_idle=False)
        for remote in self.remotes.values():
            remote.close()

    def _reap_once(self) -> None:
        now = time.monotonic()
        with self._lock:
            expired = [
                k for k, e in self._loaded.items()
                if e.keep_alive >= 0 and not e.in_use and not e.model.busy()
                and now - e.last_used >= e.keep_alive
            ]
            victims = [self._loaded.pop(k) for k in expired]
        for entry in victims:
            entry.model.unload()
            log.info("unloaded idle %s", entry.stored.name)

    def _reap_idle(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._reap_once()
            except Exception:  # keep the janitor alive whatever one unload did
                log.exception("keep-alive janitor failed")
