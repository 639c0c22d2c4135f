"""Prometheus series for remote engines: one label set per upstream of each engine.

Names are ours (`dmr_remote_upstream_*`), labelled `backend` (the engine) and `upstream` (its
base URL), read from the engines' state at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

LABELS = ["backend", "upstream"]

#: (name, kind, help, value from an upstream snapshot; None = no sample)
_SERIES = [
    ("up", "gauge", "1 when the upstream passed its last health check or request.",
     lambda u: 1.0 if u["state"] == "up" else 0.0),
    ("latency_seconds", "gauge", "Duration of the last health check (GET <url>/models).",
     lambda u: None if u["latency_ms"] is None else u["latency_ms"] / 1000),
    ("ttfb_seconds", "gauge", "Average time to the first byte of forwarded answers.",
     lambda u: None if u["ttfb_ms"] is None else u["ttfb_ms"] / 1000),
    ("in_flight", "gauge", "Requests being forwarded to the upstream.", lambda u: u["in_flight"]),
    ("cooldown_seconds", "gauge", "Seconds before a failed upstream is tried again.",
     lambda u: u["cooldown_seconds"]),
    ("requests", "counter", "Requests sent to the upstream.", lambda u: u["requests"]),
    ("failures", "counter", "Requests the upstream failed (connection, timeout, gateway).",
     lambda u: u["failed_requests"]),
    ("retries", "counter", "Failed requests that were retried on another upstream.",
     lambda u: u["retried_requests"]),
]


class RemoteUpstreams:
    """A collector over `runtime.remotes`."""

    def __init__(self, runtime):
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rows = [(name, up) for name, engine in self.runtime.remotes.items()
                for up in engine.status()["upstreams"]]
        for name, kind, help_text, value in _SERIES:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                f"dmr_remote_upstream_{name}", help_text, labels=LABELS)
            for engine, up in rows:
                sample = value(up)
                if sample is not None:
                    family.add_metric([engine, up["url"]], sample)
            yield family
