"""Turn what LiteLLM hands a custom provider into one DMR HTTP request (pure, no I/O).

LiteLLM passes OpenAI params in `optional_params`, plus a few of its own (`max_retries`) that
must not reach the server, and `extra_body` as a key that has to be merged into the body.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .naming import (
    ENV_API_BASE,
    IMAGE_ENGINE,
    resolve_api_key,
    resolve_target,
)

PROVIDER = "docker_model_runner"
ALIAS = "dmr"

#: Keys LiteLLM leaves in optional_params that are for LiteLLM, not for the server.
INTERNAL_PARAMS = frozenset({
    "max_retries", "extra_headers", "extra_body", "api_base", "api_key", "api_version",
    "custom_llm_provider", "timeout", "request_timeout", "stream", "stream_options",
    "drop_params", "additional_drop_params", "allowed_openai_params", "metadata",
    "litellm_metadata", "mock_response",
})

#: Defaults LiteLLM's built-in provider injects as `api_base` when the caller gave none
#: (1.80.5-1.106.x). They are not what the caller asked for, so they are ignored.
BUILTIN_DEFAULT_BASES = frozenset({"http://localhost:22088/engines/llama.cpp"})


@dataclass(frozen=True)
class Request:
    """One HTTP call to make: where, what, and the names to use in error messages."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str]
    model: str
    provider: str
    text_completion: bool = False
    stream: bool = False


def jsonable(obj: Any) -> Any:
    """Messages may hold LiteLLM pydantic objects (e.g. a previous reply's tool calls)."""
    if hasattr(obj, "model_dump"):
        return jsonable(obj.model_dump(exclude_none=True))
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def caller_api_base(api_base: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """Drop LiteLLM's injected built-in default so our own resolution applies."""
    env = os.environ if env is None else env
    if api_base and api_base.rstrip("/") in BUILTIN_DEFAULT_BASES and not env.get(ENV_API_BASE):
        return None
    return api_base


def server_params(optional_params: Mapping[str, Any] | None) -> dict[str, Any]:
    """OpenAI params for the server: internal keys dropped, `extra_body` merged last."""
    params = dict(optional_params or {})
    extra_body = params.get("extra_body") or {}
    body = {k: jsonable(v) for k, v in params.items()
            if k not in INTERNAL_PARAMS and v is not None}
    body.update(jsonable(extra_body))
    return body


def _prompt(messages: list[Any]) -> str | list[str]:
    """LiteLLM's text_completion wraps each prompt as one user message; unwrap them."""
    prompts = [m.get("content") if isinstance(m, Mapping) else getattr(m, "content", None)
               for m in messages]
    texts = [p if isinstance(p, str) else "" for p in prompts]
    return texts[0] if len(texts) == 1 else texts


def _headers(api_key: str | None, extra: Mapping[str, Any] | None,
             env: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {resolve_api_key(api_key, env)}",
               "Content-Type": "application/json"}
    headers.update({str(k): str(v) for k, v in (extra or {}).items()})
    return headers


def chat_request(model: str, messages: list[Any], optional_params: Mapping[str, Any] | None,
                 litellm_params: Mapping[str, Any] | None, api_base: str | None,
                 api_key: str | None, headers: Mapping[str, Any] | None, stream: bool,
                 env: Mapping[str, str] | None = None) -> Request:
    """A chat completion, or a text completion when LiteLLM's text_completion() sent it."""
    lp = litellm_params or {}
    text = bool(lp.get("text_completion"))
    provider = str(lp.get("custom_llm_provider") or PROVIDER)
    target = resolve_target(model, "completions" if text else "chat/completions",
                            caller_api_base(api_base, env), env)
    body: dict[str, Any] = {"model": target.model}
    if text:
        body["prompt"] = _prompt(messages)
    else:
        body["messages"] = jsonable(messages)
    body.update(server_params(optional_params))
    body["model"] = target.model
    if stream:
        options = dict((optional_params or {}).get("stream_options") or {})
        body["stream"] = True
        body["stream_options"] = {**options, "include_usage": True}
    return Request(url=target.url, body=body, headers=_headers(api_key, headers, env),
                   model=model, provider=provider, text_completion=text, stream=stream)


def embedding_request(model: str, input: list[Any], optional_params: Mapping[str, Any] | None,
                      litellm_params: Mapping[str, Any] | None, api_base: str | None,
                      api_key: str | None, env: Mapping[str, str] | None = None) -> Request:
    lp = litellm_params or {}
    provider = str(lp.get("custom_llm_provider") or PROVIDER)
    target = resolve_target(model, "embeddings", caller_api_base(api_base, env), env)
    body = {"model": target.model, "input": jsonable(input), **server_params(optional_params)}
    body["model"] = target.model
    extra = (optional_params or {}).get("extra_headers") or lp.get("extra_headers")
    return Request(url=target.url, body=body, headers=_headers(api_key, extra, env),
                   model=model, provider=provider)


def image_request(model: str, prompt: str, optional_params: Mapping[str, Any] | None,
                  api_base: str | None, api_key: str | None,
                  env: Mapping[str, str] | None = None) -> Request:
    """Images only exist on the diffusers engine, whatever engine the base URL names."""
    target = resolve_target(model, "images/generations", caller_api_base(api_base, env), env,
                            default_engine=IMAGE_ENGINE, base_engine_applies=False)
    body = {"model": target.model, "prompt": prompt, **server_params(optional_params)}
    body["model"] = target.model
    extra = (optional_params or {}).get("extra_headers")
    return Request(url=target.url, body=body, headers=_headers(api_key, extra, env),
                   model=model, provider=PROVIDER)

