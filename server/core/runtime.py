"""Which models are loaded, on which engine, and for how long.

Models load lazily on first use (concurrent first requests wait for one load), stay loaded while
requests use them, and are unloaded after `keep_alive` idle seconds by a janitor thread.

A model whose runner process died (engines/runner/) is dropped and loaded again on the next
request, unless it crashed `crash_loop_limit` times within `crash_loop_window` seconds: then
it is answered with a 503 saying why, until the window has passed or its configuration
changes, instead of being restarted forever.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..store.store import ModelStore, StoredModel
from . import memory
from .errors import (
    EngineFailure,
    EngineNotFound,
    EngineNotInstalled,
    ModelLoadFailed,
    NotSupported,
    RunnerCrashed,
    RunnerCrashLoop,
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


def template_layer(stored: StoredModel) -> str | None:
    """The artifact's chat template layer (`dmr package --chat-template`), if it has one."""
    path = stored.chat_template_path
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read the chat template layer of %s: %s", stored.name, exc)
        return None


@dataclass
class LoadedEntry:
    stored: StoredModel
    engine: str
    model: Any  # core.engine.LoadedModel
    keep_alive: float
    loaded_at: float
    load_seconds: float
    last_used: float = field(default_factory=time.monotonic)
    in_use: int = 0
    #: The artifact's template layer, read once at load (it wins over the GGUF's, DMR's rule).
    template_layer: str | None = None
    #: The engine's estimate of the RAM it takes (core.engine.MemoryEstimate), or None.
    memory: Any = None

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

    def chat_template(self, tools: list | None = None) -> str | None:
        """The template to render with: the artifact's template layer, else the GGUF's
        (its `tool_use` variant when there are tools and it has one, as llama.cpp does)."""
        if self.entry.template_layer is not None:
            return self.entry.template_layer
        info = self.model.info
        if tools:
            variant = (getattr(info, "metadata", None) or {}).get(
                "tokenizer.chat_template.tool_use")
            if variant:
                return variant
        return info.chat_template


class CrashLog:
    """Recent runner crashes per model, for the crash-loop guard."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self._crashes: dict[str, list[tuple[float, RunnerCrashed]]] = {}

    def add(self, model_id: str, crash: RunnerCrashed) -> None:
        self._crashes.setdefault(model_id, []).append((time.monotonic(), crash))

    def forget(self, model_id: str | None = None) -> None:
        if model_id is None:
            self._crashes.clear()
        else:
            self._crashes.pop(model_id, None)

    def check(self, stored: StoredModel) -> None:
        """RunnerCrashLoop when the model crashed too often lately."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        recent = [(t, c) for t, c in self._crashes.get(stored.id, []) if now - t < self.window]
        self._crashes[stored.id] = recent
        if len(recent) >= self.limit:
            last_time, last = recent[-1]
            retry = max(1, int(self.window - (now - last_time)) + 1)
            raise RunnerCrashLoop(stored.name, len(recent), self.window, retry, last.how,
                                  getattr(last, "hint", ""))


class Runtime:
    def __init__(self, store: ModelStore, engines: dict[str, Any], *, keep_alive: float,
                 janitor_interval: float = 1.0, configs: Any = None,
                 crash_loop_limit: int = 3, crash_loop_window: float = 60.0,
                 remotes: dict[str, Any] | None = None, memory_budget: int = 0):
        self.store = store
        #: Bytes the loaded models' estimates may add up to (core/memory.py); 0 = no limit.
        self.memory_budget = memory_budget
        self._reserved: dict[tuple[str, str], int] = {}  # estimates of loads in progress
        self.crashes = CrashLog(crash_loop_limit, crash_loop_window)
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
                if entry is not None and not _alive(entry):
                    self._drop_dead(key, entry)
                    entry = None
                if entry is not None:
                    entry.in_use += 1
                    if keep_alive is not None:
                        entry.keep_alive = keep_alive
                    return Lease(entry, 0.0)
                self.crashes.check(stored)
            started = time.monotonic()
            configured = self.configs.get(stored.id) if self.configs else None
            try:
                # Context size: configured, else packaged, else the engine's default.
                options = {"context_size": stored.config.get("context_size")}
                if configured is not None:
                    options.update(configured.load_options())
                _check_file(stored)
                estimate = self._fit(key, stored, engine_name, options)
                try:
                    model = self.engines[engine_name].load(str(stored.gguf_path),
                                                           name=stored.name, **options)
                finally:
                    with self._lock:
                        self._reserved.pop(key, None)
            except RunnerCrashed as exc:
                with self._lock:
                    self.crashes.add(stored.id, exc)
                raise
            except ModelLoadFailed as exc:
                log.warning("cannot load %s: %s", stored.name, exc.reason)
                raise ModelLoadFailed(stored.name, exc.reason) from exc
            except (EngineFailure, memory.InsufficientMemory, memory.MemoryBusy):
                raise
            except Exception as exc:
                raise EngineFailure(f"could not load {stored.name}: {exc}") from exc
            seconds = time.monotonic() - started
            describe = getattr(model, "describe", None)
            log.info("loaded %s on %s in %.2fs%s", stored.name, engine_name, seconds,
                     f" ({describe()})" if describe else "")
            if keep_alive is None:
                keep_alive = self.keep_alive
                if configured is not None and configured.keep_alive is not None:
                    keep_alive = configured.keep_alive
            entry = LoadedEntry(stored, engine_name, model, keep_alive,
                                time.time(), seconds, in_use=1,
                                template_layer=template_layer(stored), memory=estimate)
            with self._lock:
                self._loaded[key] = entry
            return Lease(entry, seconds)

    def model_defaults(self, stored: StoredModel):
        """The model's default request settings (store/model_defaults.py) and their sources."""
        from ..store import model_defaults

        configured = self.configs.get(stored.id) if self.configs else None
        try:
            flags = configured.model_defaults() if configured is not None else None
        except Exception:  # a config written by an older server: its flags load as they can
            flags = None
        return model_defaults.for_model(stored.config, flags, str(stored.gguf_path))
    def _fit(self, key: tuple[str, str], stored: StoredModel, engine_name: str,
             options: dict[str, Any]) -> Any:
        """The model's memory estimate, once it fits the budget: idle models are unloaded
        (least recently used first) to make room; InsufficientMemory or MemoryBusy when
        that is not enough (core/memory.py). The estimate stays reserved while it loads."""
        estimate_fn = getattr(self.engines[engine_name], "estimate", None)
        if estimate_fn is None:
            return None
        estimate = estimate_fn(str(stored.gguf_path), name=stored.name, **options)
        with self._lock:
            loaded = [e for k, e in self._loaded.items() if k != key and _alive(e)]
            victims = memory.plan(stored.name, estimate.total, estimate.describe(),
                                  self.memory_budget, loaded, sum(self._reserved.values()),
                                  lambda e: not e.in_use and not e.model.busy())
            for victim in victims:
                self._loaded.pop((victim.stored.id, victim.engine), None)
            self._reserved[key] = estimate.total
        for victim in victims:
            log.info("unloading idle %s to make room for %s (memory budget %s)",
                     victim.stored.name, stored.name, memory.format_bytes(self.memory_budget))
            victim.model.unload()
        return estimate

    def release(self, lease: Lease) -> None:
        with self._lock:
            lease.entry.in_use -= 1
            lease.entry.last_used = time.monotonic()
        if lease.entry.keep_alive == 0:
            self._reap_once()

    def loaded(self) -> list[LoadedEntry]:
        """Snapshots of the loaded models (copies taken under the lock: changing one changes
        nothing here; their `model` is the live engine model, to read facts and stats)."""
        with self._lock:
            return [dataclasses.replace(e) for e in self._loaded.values() if _alive(e)]

    def is_loaded(self, model_id: str, *, busy: bool = False) -> bool:
        """Whether the model is loaded (on any engine); with `busy`, loaded and serving."""
        return any(e.stored.id == model_id and (not busy or e.in_use or e.model.busy())
                   for e in self.loaded())

    def unload_when_idle(self, model_id: str) -> int:
        """Unload the model now where it is idle, and where it is busy as soon as its requests
        end (its keep_alive becomes 0); returns how many were unloaded now."""
        with self._lock:
            for (mid, _engine), entry in self._loaded.items():
                if mid == model_id:
                    entry.keep_alive = 0.0
        return self.unload(model_id)

    def _drop_dead(self, key: tuple[str, str], entry: LoadedEntry) -> None:
        """Forget a model whose runner died (caller holds the lock); count the crash once."""
        if self._loaded.get(key) is entry:
            del self._loaded[key]
            failure = getattr(entry.model, "failure", None)
            if isinstance(failure, RunnerCrashed):
                self.crashes.add(entry.stored.id, failure)

    def forget_crashes(self, model_id: str | None = None) -> None:
        """New settings may help a crashing model: let it start again at once."""
        with self._lock:
            self.crashes.forget(model_id)

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
            for key, entry in list(self._loaded.items()):
                if not _alive(entry):
                    self._drop_dead(key, entry)
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


def _alive(entry: LoadedEntry) -> bool:
    alive = getattr(entry.model, "alive", None)
    return alive() if alive is not None else True
