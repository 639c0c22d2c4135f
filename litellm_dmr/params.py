"""Let `docker_model_runner/` embeddings and image generation accept OpenAI's params.

LiteLLM validates these params before it calls any handler. For a provider that is neither
OpenAI-compatible nor has a config of its own it rejects embedding params
(`UnsupportedParamsError`) and silently drops image params (`size`, `n`, ...). Once the
built-in is out of `openai_compatible_providers`, `docker_model_runner` is such a provider,
and the OpenAI SDK sends `encoding_format="base64"` with every embeddings call, so the proxy
would fail them all. LiteLLM looks the configs up with `ProviderConfigManager`; for this
provider it now gets pass-through configs. They only validate and map params: the calls still
go to the plugin's handler. (`dmr/` is not a LiteLLM enum member and cannot get configs;
there, pass such params in `extra_body`, or set `drop_params` for embeddings.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import litellm
from litellm.llms.base_llm.embedding.transformation import BaseEmbeddingConfig
from litellm.llms.base_llm.image_generation.transformation import BaseImageGenerationConfig

log = logging.getLogger("litellm_dmr")

EMBEDDING_PARAMS = ["encoding_format", "dimensions", "user"]
IMAGE_PARAMS = ["n", "quality", "response_format", "size", "style", "user"]
_MARK = "_litellm_dmr_patched"


def _pass_through(non_default_params: dict, optional_params: dict) -> dict:
    optional_params.update(non_default_params)
    return optional_params


class PassThroughEmbeddingConfig(BaseEmbeddingConfig):
    """Accepts OpenAI's embedding params unchanged; never used to send requests."""

    def get_supported_openai_params(self, model: str) -> list:
        return list(EMBEDDING_PARAMS)

    def map_openai_params(self, non_default_params: dict, optional_params: dict, model: str,
                          drop_params: bool) -> dict:
        return _pass_through(non_default_params, optional_params)

    def validate_environment(self, headers: dict, model: str, messages: list,
                             optional_params: dict, litellm_params: dict,
                             api_key: str | None = None, api_base: str | None = None) -> dict:
        return headers

    def transform_embedding_request(self, model: str, input: Any, optional_params: dict,
                                    headers: dict) -> dict:
        return {"model": model, "input": input, **optional_params}

    def transform_embedding_response(self, model: str, raw_response: Any, model_response: Any,
                                     logging_obj: Any, api_key: str | None,
                                     request_data: dict, optional_params: dict,
                                     litellm_params: dict) -> Any:
        return model_response

    def get_error_class(self, error_message: str, status_code: int, headers: Any) -> Any:
        from litellm.llms.custom_llm import CustomLLMError

        return CustomLLMError(status_code, error_message)


class PassThroughImageConfig(BaseImageGenerationConfig):
    """Accepts OpenAI's image params unchanged; never used to send requests."""

    def get_supported_openai_params(self, model: str) -> list:
        return list(IMAGE_PARAMS)

    def map_openai_params(self, non_default_params: dict, optional_params: dict, model: str,
                          drop_params: bool) -> dict:
        return _pass_through(non_default_params, optional_params)


def _patch(method_name: str, provider: str, make_config: Callable[[], Any]) -> bool:
    manager = getattr(getattr(litellm, "utils", None), "ProviderConfigManager", None)
    original = getattr(manager, method_name, None)
    if manager is None or original is None:
        log.warning("litellm_dmr: LiteLLM has no ProviderConfigManager.%s; OpenAI params for "
                    "%s/ may be rejected or dropped", method_name, provider)
        return False
    if getattr(original, _MARK, False):
        return True
    try:
        config = make_config()
        member = litellm.types.utils.LlmProviders(provider)
    except (TypeError, ValueError) as exc:  # abstract API changed, or no such enum member
        log.warning("litellm_dmr: cannot declare OpenAI params for %s/: %s", provider, exc)
        return False

    def patched(model: str, provider: Any) -> Any:
        return config if provider == member else original(model=model, provider=provider)

    setattr(patched, _MARK, True)
    setattr(manager, method_name, staticmethod(patched))
    return True


def accept_openai_params(provider: str) -> bool:
    """Give `provider` pass-through embedding and image configs; False if LiteLLM lacks the hooks."""
    embeddings = _patch("get_provider_embedding_config", provider, PassThroughEmbeddingConfig)
    images = _patch("get_provider_image_generation_config", provider, PassThroughImageConfig)
    return embeddings and images
