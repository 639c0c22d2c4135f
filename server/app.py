"""The Flask application factory.

`create_app(settings, engines=...)` takes the engines the runtime loads models with (any
`core.engine.Engine`, e.g. engines/fake.py's FakeEngine in in-process tests); without them it builds
the llama.cpp engine from the settings.
"""

from __future__ import annotations

import logging

from flask import Flask, Response

from .api import anthropic, metrics, misc, models, ollama, openai, openapi, responses
from .api import dashboard as dashboard_api
from .api import engines as engines_api
from .api import recorder_routes as recorder_api
from .api import remote as remote_api
from .api import security as security_api
from .config import Settings, meminfo
from .core.engine import Engine
from .core.memory import resolve_budget
from .core.runtime import Runtime
from .engines import remote as remote_engines
from .engines.llamacpp import EngineSettings, LlamaCppEngine
from .state import State
from .store.bundled import ensure_default_model
from .store.responses_store import Limits, ResponseStore
from .store.runner_config import RunnerConfigs
from .store.store import ModelStore

log = logging.getLogger(__name__)


def llamacpp_engines(settings: Settings) -> dict[str, Engine]:
    """The engines a server built from `settings` alone runs: llama.cpp."""
    return {
        "llama.cpp": LlamaCppEngine(EngineSettings(
            context_size=settings.context_size, parallel=settings.parallel,
            threads=settings.threads, max_queue=settings.max_queue,
            kv_tokens=settings.kv_cache_tokens, request_timeout=settings.request_timeout,
            kv_unified=settings.kv_unified, extra_buffers=settings.extra_buffers,
            prompt_cache_mib=settings.prompt_cache_mib,
            prompt_cache_disk_mib=settings.prompt_cache_disk_mib,
            speculative=settings.speculative),
            runner=settings.runner, state_dir=settings.models_dir),
    }


def create_app(settings: Settings | None = None, *,
               engines: dict[str, Engine] | None = None) -> Flask:
    """The app; `engines` (by name, as a request's engine names them) replace the llama.cpp
    engine the settings describe."""
    settings = settings or Settings.load()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.json.ensure_ascii = False

    store = ModelStore(settings.models_dir, insecure_registries=settings.insecure_registries)
    if settings.import_default_model:
        ensure_default_model(store)
    if engines is None:
        engines = llamacpp_engines(settings)
    runtime = Runtime(store, engines, keep_alive=settings.keep_alive,
                      configs=RunnerConfigs(settings.models_dir),
                      crash_loop_limit=settings.crash_loop_limit,
                      crash_loop_window=settings.crash_loop_window,
                      remotes=remote_engines.build(settings.engines),
                      memory_budget=resolve_budget(settings.memory_budget,
                                                   meminfo("MemAvailable")))
    app.extensions["dmr"] = State(settings, store, runtime)
    security_api.register(app, settings.cors_origins, settings.api_keys,
                          bind_host=settings.host if settings.tcp else "127.0.0.1",
                          allowed_hosts=settings.allowed_hosts)
    remote_api.register(app, runtime.remotes)  # after the security hooks (keys, CORS)

    recorder_api.register(app, store, settings.recorder_size, settings.api_keys)

    app.register_blueprint(misc.bp)
    app.register_blueprint(dashboard_api.bp)
    metrics.register(app, enabled=not settings.disable_metrics)
    app.register_blueprint(openapi.bp)
    openai.register(app)
    responses.register(app, ResponseStore(settings.models_dir, Limits(
        settings.responses_max_count, settings.responses_max_bytes, settings.responses_ttl)))
    anthropic.register(app)
    models.register(app)
    app.register_blueprint(engines_api.bp)
    ollama.register(app)

    @app.errorhandler(404)
    def _not_found(_exc):
        return Response("not found\n", status=404, mimetype="text/plain")

    @app.errorhandler(405)
    def _not_allowed(_exc):
        return Response("method not allowed\n", status=405, mimetype="text/plain")

    return app
