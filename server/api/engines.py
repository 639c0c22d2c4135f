"""DMR's engine admin routes: /engines/status, ps, df, unload and _configure.

Errors are plain text, as DMR's. `_configure` settings are stored per model ID in the models
directory (runner-config.json) and used the next time the model loads; a configure call for
an idle loaded model unloads it and preloads it with the new settings in the background, and
one for a model that is serving requests is refused with 409, as DMR does (decided in
core/management.py; this module translates the request into a RunnerConfig).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..config import parse_duration
from ..core import management
from ..core.errors import InvalidRequest, NotSupported
from ..core.runtime import DEFAULT_ENGINE, KNOWN_ENGINES, LoadedEntry
from ..state import current
from ..store.runner_config import (
    SWITCHES,
    RunnerConfig,
    go_duration,
    parse_runtime_flags,
    split_raw_flags,
)
from . import remote
from .common import install_error_handlers, plain_error
from .validation import json_body, validate

log = logging.getLogger(__name__)

bp = Blueprint("dmr_engines", __name__)


install_error_handlers(bp, plain_error, "DMR engines")


@bp.get("/engines/status")
def status():
    runtime = current().runtime
    out = {}
    for name in KNOWN_ENGINES:
        if name in runtime.engines:
            engine = runtime.engines[name]
            version = getattr(engine, "version", None)
            detail = version() if version else "installed"
            how = getattr(engine, "status", None)
            out[name] = f"Running: {detail}" + (f"; {how()}" if how else "")
        elif name not in runtime.remotes:
            out[name] = "Not Installed: not configured on this server"
    for name, engine in runtime.remotes.items():  # remote engines: each upstream's health
        out[name] = remote.status_text(engine)
    return jsonify(out)


def _ps_entry(entry: LoadedEntry) -> dict[str, Any]:
    info = getattr(entry.model, "info", None)
    stats = entry.model.stats() if hasattr(entry.model, "stats") else None
    idle_for = max(0.0, time.monotonic() - entry.last_used)
    return {
        "backend_name": entry.engine,
        "model_name": entry.stored.name,
        "mode": "completion",
        "last_used": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - idle_for)),
        "in_use": bool(entry.in_use or entry.model.busy()),
        "keep_alive": go_duration(entry.keep_alive),
        # Ours, not DMR's: what the model was really loaded with, and what it holds.
        "context_size": getattr(info, "n_ctx", None),
        "size": getattr(info, "size_bytes", None),
        "kv_cache_tokens": stats.kv_cache_tokens if stats else None,
        "kv_cache_size": stats.kv_cache_size if stats else None,
        **_runner_fields(entry.model),
        **memory_fields(entry),
    }


#: Load settings /engines/ps shows (what a model's runtime flags became).
_SHOWN_SETTINGS = ("parallel", "threads", "threads_batch", "n_batch", "mlock", "mmap",
                   "rope_scaling", "rope_freq_base", "rope_freq_scale", "n_gpu_layers",
                   "main_gpu", "split_mode")
def memory_fields(entry: LoadedEntry) -> dict[str, Any]:
    """Ours: the estimate the memory budget counted, and what the runner really holds."""
    out: dict[str, Any] = {}
    if entry.memory is not None:
        out["memory_estimate"] = entry.memory.total
        out["memory_estimate_parts"] = dict(entry.memory.parts)
    rss = getattr(entry.model, "rss", None)
    value = rss() if rss is not None else None
    if value is not None:
        out["memory_rss"] = value
    return out


def _runner_fields(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(model, "pid", None):
        out["runner_pid"] = model.pid
    settings = getattr(model, "settings", None) or getattr(model, "_settings", None)
    if settings is not None:
        out["settings"] = {k: getattr(settings, k) for k in _SHOWN_SETTINGS
                           if hasattr(settings, k)}
    decision = getattr(model, "decision", None)
    if decision is not None:
        out["extra_buffers"] = decision.extra_buffers
        out["extra_buffers_reason"] = f"{decision.setting}: {decision.reason}"
    return out


@bp.get("/engines/ps")
def ps():
    return jsonify([_ps_entry(e) for e in current().runtime.loaded()])


@bp.get("/engines/df")
def df():
    runtime = current().runtime
    usage = getattr(runtime.engines.get(DEFAULT_ENGINE), "disk_usage", None)
    return jsonify({"models_disk_usage": runtime.store.disk_usage(),
                    "default_backend_disk_usage": usage() if usage else 0})


@bp.post("/engines/unload")
def unload():
    body = json_body()
    validate("dmr_unload", body)
    state = current()
    backend = body.get("backend") or None
    if backend:
        state.runtime.resolve_engine(backend)
    if body.get("all"):
        count = state.runtime.unload()
    else:
        count = 0
        for name in body.get("models") or []:
            model = state.store.find(name)
            if model is not None:
                count += state.runtime.unload(model.id)
    return jsonify({"unloaded_runners": count})


# ------------------------------------------------------------------------ configure


def _keep_alive(value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidRequest(f"keep_alive: {exc}", param="keep_alive") from exc


def _merge(previous: RunnerConfig | None, body: dict[str, Any]) -> RunnerConfig:
    """The new configuration: fields the request leaves out keep their configured values."""
    cfg = RunnerConfig(**vars(previous)) if previous else RunnerConfig()
    if body.get("speculative"):
        raise NotSupported("speculative decoding is not supported by this server")
    if body.get("mode"):
        cfg.mode = body["mode"]
    if body.get("context-size") is not None:
        size = body["context-size"]
        if size == 0 or size < -1:
            raise InvalidRequest("context-size must be a positive number of tokens, or -1 to "
                                 "reset it", param="context-size")
        cfg.context_size = None if size == -1 else size
    flags = body.get("runtime-flags")
    if body.get("raw-runtime-flags"):
        flags = (flags or []) + split_raw_flags(body["raw-runtime-flags"])
    if flags is not None:
        cfg.runtime_flags = list(flags)
        cfg.extra_buffers = None  # a --no-repack flag now says it; the field may say it again
    if body.get("keep_alive") is not None:
        cfg.keep_alive = _keep_alive(body["keep_alive"])
    llamacpp = body.get("llamacpp") or {}
    if llamacpp.get("reasoning-budget") is not None:
        cfg.reasoning_budget = llamacpp["reasoning-budget"]
    if llamacpp.get("extra-buffers") is not None:
        cfg.extra_buffers = llamacpp["extra-buffers"]
        cfg.runtime_flags = [f for f in cfg.runtime_flags
                             if SWITCHES.get(f) != ("extra_buffers", "off")]
    return cfg


def _flag_notes(cfg: RunnerConfig) -> list[str]:
    """What the flags will not do as written on this server (they are still accepted)."""
    parsed = parse_runtime_flags(cfg.runtime_flags)
    notes = []
    cores = current().settings.threads
    for key, flag in (("threads", "--threads"), ("threads_batch", "--threads-batch")):
        if parsed.engine.get(key, 0) > cores:
            notes.append(f"{flag} {parsed.engine[key]}: this server runs llama.cpp on at most "
                         f"{cores} threads (more than the cores slows it down); using {cores}")
    engine = current().runtime.engines.get("llama.cpp")
    gpus = engine.gpu_backends() if hasattr(engine, "gpu_backends") else []
    if parsed.gpu and not gpus:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in parsed.gpu)
        notes.append(f"{names}: no effect, this llama.cpp build has no GPU backend (CPU only)")
    return notes


@bp.post("/engines/_configure")
@bp.post("/engines/<engine>/_configure")
def configure(engine: str | None = None):
    body = json_body()
    validate("dmr_configure", body)
    state = current()
    state.runtime.resolve_engine(engine)
    if engine in state.runtime.remotes:
        raise NotSupported(f"{engine} is a remote engine: configure its models on its upstreams")
    model = state.store.get(body["model"])
    cfg = _merge(management.previous_config(state.runtime, model), body)
    notes = _flag_notes(cfg)
    management.configure(state.runtime, model, cfg)
    for note in notes:
        log.info("configure %s: %s", model.name, note)
    return Response("".join(f"note: {n}\n" for n in notes), status=202, mimetype="text/plain")


@bp.get("/engines/_configure")
@bp.get("/engines/<engine>/_configure")
def show_configuration(engine: str | None = None):
    state = current()
    engine_name = state.runtime.resolve_engine(engine)
    wanted = request.args.get("model")
    model_id = state.store.get(wanted).id if wanted else None
    out = []
    for mid, cfg in state.runtime.configs.items():
        if model_id and mid != model_id:
            continue
        stored = state.store.find(mid)
        out.append({"Backend": engine_name, "Model": stored.name if stored else mid,
                    "ModelID": mid, "Mode": cfg.mode, "Config": cfg.to_dmr()})
    return jsonify(out)
