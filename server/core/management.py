"""Model management, decided once for every dialect: delete, purge, pull, configure, unload.

DMR's native routes, Ollama's and the engine admin routes all manage the same models; what a
deletion unloads, when a pull waits its turn, what a configure refuses live here, and the
dialects only translate their requests into these calls and the results into their answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..store.progress import Event as PullEvent
from ..store.progress import Notice
from ..store.pull import prepare_pull
from ..store.runner_config import RunnerConfig
from ..store.store import StoredModel
from .errors import Conflict, DMRError
from .runtime import Runtime

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------ delete, purge


def release(runtime: Runtime, model: StoredModel) -> None:
    """Unload a model whose files are about to go; Conflict while requests are using it."""
    if not runtime.is_loaded(model.id):
        return
    runtime.unload(model.id)  # idle runners only
    if runtime.is_loaded(model.id):
        raise Conflict(f"model {model.name} is in use by running requests; retry when they "
                       "finish")


@dataclass
class Deletion:
    model: StoredModel
    #: The store's account of what it did (DMR's answer: {"Untagged": ...}, {"Deleted": ...}).
    actions: list[dict[str, str]]
    #: Whether the model's files went (not just one of its names).
    deleted: bool


def delete(runtime: Runtime, ref: str, *, force: bool = False) -> Deletion:
    """Remove the name `ref` (every name with `force`); the model goes when its last name
    does, unloaded first, and its runner configuration with it."""
    store = runtime.store
    model = store.get(ref)
    if len(model.tags) <= 1 or force:  # the files go, not just a tag
        release(runtime, model)
    actions = store.remove(ref, force=force)
    deleted = store.find(model.id) is None
    if deleted and runtime.configs is not None:
        runtime.configs.remove(model.id)
    return Deletion(model, actions, deleted)


def purge(runtime: Runtime) -> int:
    """Delete every model (each unloaded first) and every runner configuration."""
    for model in runtime.store.list():
        release(runtime, model)
    count = runtime.store.purge()
    if runtime.configs is not None:
        runtime.configs.clear()
    return count


# ------------------------------------------------------------------------ pull


#: DMR lets two pulls run at once; more wait their turn (whichever dialect asked).
PULL_SLOTS = threading.BoundedSemaphore(2)


def _one_of_two(events: Iterator[PullEvent]) -> Iterator[PullEvent]:
    """Run a pull's events in one of the two pull slots (taken when the stream starts)."""
    with PULL_SLOTS:
        yield from events  # closing this stream closes the pull's (a partial download goes)


def pull(runtime: Runtime, ref: str, bearer_token: str | None = None) -> Iterator[PullEvent]:
    """The pull's progress events (OCI registry or Hugging Face), within the two-pull limit;
    a bad reference or an unreachable registry raises before any event."""
    return _one_of_two(prepare_pull(runtime.store, ref, bearer_token).events())


@dataclass
class Pull:
    events: Iterator[PullEvent]
    #: Why the local copy is used instead (the registry could not be reached), or None.
    offline: DMRError | None = None


def pull_or_local(runtime: Runtime, ref: str) -> Pull:
    """A pull; a model already stored is still answered when the registry cannot be reached
    (offline use, Ollama's behaviour)."""
    try:
        return Pull(pull(runtime, ref))
    except DMRError as exc:
        if runtime.store.find(ref) is None:
            raise
        return Pull(iter([Notice("success", "Using cached model")]), exc)


# ------------------------------------------------------------------------ configure


#: The preload of each model's last configure: a new configure waits for it, else that
#: load (with the old settings) could finish after the new configure's unload and stay.
_preloads: dict[str, threading.Thread] = {}
_PRELOAD_WAIT = 300.0


def _wait_for_preload(model_id: str) -> None:
    thread = _preloads.get(model_id)
    if thread is not None:
        thread.join(_PRELOAD_WAIT)


def _preload(runtime: Runtime, model_id: str) -> None:
    """Load the model with its new settings now, as DMR does after a configure."""
    def work() -> None:
        try:
            runtime.release(runtime.acquire(model_id))
        except Exception as exc:  # the next request will report it properly
            log.warning("preload of %s after configure failed: %s", model_id, exc)

    thread = threading.Thread(target=work, name="configure-preload", daemon=True)
    _preloads[model_id] = thread
    thread.start()


def configure(runtime: Runtime, model: StoredModel, config: RunnerConfig) -> None:
    """Store a model's runner configuration and reload it with it: an idle loaded model is
    unloaded and preloaded in the background; one serving requests is refused (DMR's 409)."""
    _wait_for_preload(model.id)
    if runtime.is_loaded(model.id, busy=True):
        raise Conflict("runner already active")
    loaded = runtime.is_loaded(model.id)
    runtime.configs.put(model.id, config)
    runtime.forget_crashes(model.id)
    if loaded:
        runtime.unload(model.id)
        if runtime.is_loaded(model.id):
            raise Conflict("runner already active")
    _preload(runtime, model.id)


def previous_config(runtime: Runtime, model: StoredModel) -> Any:
    """The model's configured runner settings (store.runner_config.RunnerConfig), or None."""
    return runtime.configs.get(model.id) if runtime.configs is not None else None


# ------------------------------------------------------------------------ unload


def unload_when_idle(runtime: Runtime, ref: str) -> StoredModel:
    """Unload a model now if idle, else as soon as its requests end (keep_alive 0)."""
    model = runtime.store.get(ref)
    runtime.unload_when_idle(model.id)
    return model
