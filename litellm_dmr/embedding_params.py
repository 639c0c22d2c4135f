"""Let `docker_model_runner/` embeddings accept OpenAI's embedding params.

LiteLLM rejects `encoding_format`, `dimensions` and `user` with UnsupportedParamsError for any
provider that is neither OpenAI-compatible nor has an embedding config. Once the built-in is
taken out of `openai_compatible_providers` that includes `docker_model_runner`, and the OpenAI
SDK sends `encoding_format="base64"` on every embeddings call, so the proxy would fail them all.
LiteLLM looks the config up with `ProviderConfigManager.get_provider_embedding_config`, which is
given a pass-through config for this provider. It only validates and maps params: the call
itself still goes to the plugin's handler. (`dmr/` is not a LiteLLM enum member and cannot get
one; there, pass such params in `extra_body` or set `drop_params`.)
"""

from __future__ import annotations

import logging
from typing import Any

import litellm
from litellm.llms.base_llm.embedding.transformation import BaseEmbeddingConfig

log = logging.getLogger("litellm_dmr")

OPENAI_EMBEDDING_PARAMS = ["encoding_format", "dimensions", "user"]
_MARK = "_litellm_dmr_patched"


class PassThroughEmbeddingConfig(BaseEmbeddingConfig):
    """Accepts OpenAI's embedding params unchanged; never used to send requests."""

    def get_supported_openai_params(self, model: str) -> list:
        return list(OPENAI_EMBEDDING_PARAMS)

    def map_openai_params(self, non_default_params: dict, optional_params: dict, model: str,
                          drop_params: bool) -> dict:
        optional_params.update(non_default_params)
        return optional_params

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


def accept_embedding_params(provider: str) -> bool:
    """Install the pass-through config for `provider`; False (and a log line) if impossible."""
    manager = getattr(getattr(litellm, "utils", None), "ProviderConfigManager", None)
    original = getattr(manager, "get_provider_embedding_config", None)
    if manager is None or original is None:
        log.warning("litellm_dmr: LiteLLM has no ProviderConfigManager.get_provider_embedding_"
                    "config; OpenAI embedding params for %s/ need drop_params", provider)
        return False
    if getattr(original, _MARK, False):
        return True
    try:
        config = PassThroughEmbeddingConfig()
        enum_member = litellm.types.utils.LlmProviders(provider)
    except (TypeError, ValueError) as exc:  # abstract API changed, or no such enum member
        log.warning("litellm_dmr: cannot accept embedding params for %s/: %s", provider, exc)
        return False

    def get_provider_embedding_config(model: str, provider: Any) -> Any:
        if provider == enum_member:
            return config
        return original(model=model, provider=provider)

    setattr(get_provider_embedding_config, _MARK, True)
    manager.get_provider_embedding_config = staticmethod(get_provider_embedding_config)
    return True
