"""Model-name and URL resolution for Docker Model Runner (pure functions, no I/O).

DMR model ids contain slashes (`ai/smollm2`, `hf.co/org/repo:Q4_K_M`), so the optional engine
in `<engine>/<model>` can only be recognised against DMR's list of known engines; anything else
is part of the model id. The server routes every OpenAI call under `/engines/<engine>/v1/...`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: DMR's inference engines (docker/model-runner `pkg/inference/backends/`).
KNOWN_ENGINES: tuple[str, ...] = ("llama.cpp", "vllm", "mlx", "sglang", "diffusers")
DEFAULT_ENGINE = "llama.cpp"
#: Image generation is only served by the diffusers engine.
IMAGE_ENGINE = "diffusers"

#: DMR's host-side TCP port (`docker model` exposes 12434).
DEFAULT_API_BASE = "http://localhost:12434"
ENV_API_BASE = "DOCKER_MODEL_RUNNER_API_BASE"
ENV_API_KEY = "DOCKER_MODEL_RUNNER_API_KEY"
#: DMR does not check keys; OpenAI-style clients still expect a bearer token.
DUMMY_API_KEY = "dummy-key"


@dataclass(frozen=True)
class Target:
    """Where one call goes: the full endpoint URL and the model id to put in the body."""

    url: str
    engine: str
    model: str


def split_engine(model: str) -> tuple[str | None, str]:
    """Split `<engine>/<model>` into (engine, model); engine is None when not a known engine.

    `ai/smollm2` -> (None, "ai/smollm2"); `vllm/ai/smollm2` -> ("vllm", "ai/smollm2").
    """
    head, sep, rest = model.partition("/")
    if sep and rest and head in KNOWN_ENGINES:
        return head, rest
    return None, model


def split_api_base(api_base: str) -> tuple[str, str | None]:
    """Reduce a base URL to the server root plus any engine it already names.

    Accepts the root (`http://h:12434`) and anything ending in `/engines`, `/engines/v1`,
    `/engines/<engine>`, `/engines/<engine>/v1` or the root `/v1` alias, so that a base copied
    from an OpenAI client config is never doubled into `/engines/llama.cpp/v1/engines/...`.
    """
    base = api_base.strip().rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    engine: str | None = None
    head, _, last = base.rpartition("/")
    if last in KNOWN_ENGINES and head.endswith("/engines"):
        engine, base = last, head
    if base.endswith("/engines"):
        base = base[: -len("/engines")]
    return base, engine


def resolve_api_base(api_base: str | None, env: Mapping[str, str] | None = None) -> str:
    """The base URL to use: the argument, else $DOCKER_MODEL_RUNNER_API_BASE, else DMR's default."""
    env = os.environ if env is None else env
    return (api_base or env.get(ENV_API_BASE) or DEFAULT_API_BASE).strip()


def resolve_api_key(api_key: str | None, env: Mapping[str, str] | None = None) -> str:
    """The bearer token to send: the argument, else $DOCKER_MODEL_RUNNER_API_KEY, else a dummy."""
    env = os.environ if env is None else env
    return api_key or env.get(ENV_API_KEY) or DUMMY_API_KEY


def resolve_target(
    model: str,
    path: str,
    api_base: str | None = None,
    env: Mapping[str, str] | None = None,
    default_engine: str = DEFAULT_ENGINE,
    base_engine_applies: bool = True,
) -> Target:
    """Build the endpoint for `path` (e.g. "chat/completions") and the model id to send.

    The engine comes from the model name if it names one, else from the base URL (when
    `base_engine_applies`), else `default_engine`.
    """
    engine, model_id = split_engine(model)
    root, base_engine = split_api_base(resolve_api_base(api_base, env))
    engine = engine or (base_engine if base_engine_applies else None) or default_engine
    return Target(url=f"{root}/engines/{engine}/v1/{path.lstrip('/')}", engine=engine, model=model_id)
