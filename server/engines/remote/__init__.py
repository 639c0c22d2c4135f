"""Remote engines: OpenAI-compatible upstreams (vLLM, SGLang, llama-server, another DMR) with
replicas, health checks and cooldowns, behind DMR's routes (`/engines/<name>/v1/...`).

`config` parses the settings, `upstream` holds one upstream's state, `engine` picks replicas and
forwards requests at the HTTP level. The dialects' translation lives in `server/api/remote*.py`.
"""

from __future__ import annotations

from typing import Any


def build(configs: dict[str, Any]) -> dict[str, Any]:
    """One started RemoteEngine per configured engine (none: nothing is imported)."""
    if not configs:
        return {}
    from .engine import RemoteEngine

    engines = {name: RemoteEngine(config) for name, config in configs.items()}
    for engine in engines.values():
        engine.start()
    return engines
