"""GET /metrics: Prometheus text for every loaded model, as Docker Model Runner serves it.

DMR scrapes each runner's llama.cpp server and relabels its `llamacpp:*` metrics with
`backend`, `model` and `mode`; here the same names and labels come from each loaded model's
engine statistics, so dashboards built for DMR (or llama-server) work unchanged. With no model
loaded the body is DMR's `# No active runners`. The `disable_metrics` setting (DMR's
`DISABLE_METRICS=1`) removes the route.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..state import current
from .remote_metrics import RemoteUpstreams

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ["backend", "model", "mode"]

#: (name without `llamacpp:`, kind, help, value from EngineStats)
_SERIES = [
    ("prompt_tokens", "counter", "Prompt tokens processed.", lambda s: s.prompt_tokens),
    ("prompt_seconds", "counter", "Prompt processing time.", lambda s: s.prompt_seconds),
    ("tokens_predicted", "counter", "Generation tokens processed.",
     lambda s: s.predicted_tokens),
    ("tokens_predicted_seconds", "counter", "Generation time.",
     lambda s: s.predicted_seconds),
    ("n_decode", "counter", "Number of llama_decode() calls.", lambda s: s.decodes),
    ("n_busy_slots_per_decode", "gauge", "Average number of busy slots per llama_decode() call.",
     lambda s: s.busy_slots / s.decodes if s.decodes else 0.0),
    ("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.",
     lambda s: s.prompt_tokens / s.prompt_seconds if s.prompt_seconds else 0.0),
    ("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.",
     lambda s: s.predicted_tokens / s.predicted_seconds if s.predicted_seconds else 0.0),
    ("kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.",
     lambda s: s.kv_cache_tokens / s.kv_cache_size if s.kv_cache_size else 0.0),
    ("kv_cache_tokens", "gauge", "KV-cache tokens.", lambda s: s.kv_cache_tokens),
    ("requests_processing", "gauge", "Number of requests processing.",
     lambda s: s.requests_processing),
    ("requests_deferred", "gauge", "Number of requests deferred.",
     lambda s: s.requests_deferred),
    # Ours: the prompt cache beyond the slots, and speculative decoding.
    ("prompt_cache_hits", "counter", "Prompts restored from the prompt cache.",
     lambda s: s.prompt_cache_hits),
    ("prompt_cache_restored_tokens", "counter", "Prompt tokens restored instead of prefilled.",
     lambda s: s.prompt_cache_restored_tokens),
    ("prompt_cache_bytes", "gauge", "Host RAM held by the prompt cache.",
     lambda s: s.prompt_cache_bytes),
    ("prompt_cache_disk_bytes", "gauge", "Disk held by the prompt cache.",
     lambda s: s.prompt_cache_disk_bytes),
    ("draft_tokens", "counter", "Speculative (prompt lookup) tokens verified.",
     lambda s: s.draft_tokens),
    ("draft_accepted_tokens", "counter", "Speculative tokens accepted.",
     lambda s: s.draft_accepted),
]


class _LoadedModels:
    """A Prometheus collector reading the loaded models' statistics at scrape time."""

    def __init__(self, runtime):
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        entries = [(e, e.model.stats()) for e in self.runtime.loaded()]
        for name, kind, help_text, value in _SERIES:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                f"llamacpp:{name}", help_text, labels=LABELS)
            for entry, stats in entries:
                family.add_metric([entry.engine, entry.stored.name, "completion"], value(stats))
            yield family


@bp.get("/metrics")
def metrics():
    runtime = current().runtime
    if not runtime.loaded() and not runtime.remotes:
        return Response("# No active runners\n", content_type=CONTENT_TYPE)
    registry = CollectorRegistry(auto_describe=False)
    if runtime.loaded():
        registry.register(_LoadedModels(runtime))
    if runtime.remotes:
        registry.register(RemoteUpstreams(runtime))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE)


def register(app, *, enabled: bool = True) -> None:
    if enabled:
        app.register_blueprint(bp)
