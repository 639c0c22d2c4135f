"""The LiteLLM `CustomLLM` that serves `docker_model_runner/...` and `dmr/...`.

Each method builds a request (`payload`), sends it with plain httpx (`transport`) and hands
LiteLLM its own response types back, so LiteLLM's logging, cost and exception mapping apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import GenericStreamingChunk
from litellm.utils import (
    EmbeddingResponse,
    ImageResponse,
    ModelResponse,
    convert_to_model_response_object,
)

from . import payload, transport
from .cost import ensure_zero_cost
from .streaming import ChunkConverter

#: `response._hidden_params[HIDDEN_URL_KEY]` is the DMR URL a call went to.
HIDDEN_URL_KEY = "dmr_url"


def _text_to_chat(data: dict[str, Any]) -> dict[str, Any]:
    """A `/completions` reply in chat shape; LiteLLM's text_completion() converts it back."""
    choices = []
    for i, choice in enumerate(data.get("choices") or []):
        choices.append({
            "index": choice.get("index", i),
            "message": {"role": "assistant", "content": choice.get("text") or ""},
            "finish_reason": choice.get("finish_reason") or "stop",
        })
    return {**data, "object": "chat.completion", "choices": choices}


def _priced(req: payload.Request, data: dict[str, Any] | None, mode: str) -> None:
    """Zero-price every name LiteLLM may use to look this call's cost up."""
    names = [req.model, req.body.get("model"), (data or {}).get("model")]
    ensure_zero_cost(req.provider, [n for n in names if isinstance(n, str)], mode)


def _tag(response: Any, req: payload.Request) -> Any:
    """Record the endpoint actually called (LiteLLM overwrites `api_base` with the caller's)."""
    response._hidden_params[HIDDEN_URL_KEY] = req.url
    return response


def _model_response(data: dict[str, Any], req: payload.Request,
                    model_response: ModelResponse) -> ModelResponse:
    _priced(req, data, "completion" if req.text_completion else "chat")
    if req.text_completion:
        data = _text_to_chat(data)
    response = convert_to_model_response_object(
        response_object=data, model_response_object=model_response)
    return _tag(response, req)  # type: ignore[return-value]


def _log_pre_call(logging_obj: Any, req: payload.Request, input: Any) -> None:
    if logging_obj is None:
        return
    try:
        logging_obj.pre_call(input=input, api_key=None,
                             additional_args={"complete_input_dict": req.body,
                                              "api_base": req.url, "headers": {}})
    except Exception:  # logging must never break a call
        pass


def _chunks(events: Iterator[dict[str, Any]], req: payload.Request
            ) -> Iterator[GenericStreamingChunk]:
    converter = ChunkConverter(text_completion=req.text_completion)
    for event in events:
        if converter.first:
            _priced(req, event, "completion" if req.text_completion else "chat")
        yield from converter.feed(event)
    yield converter.finish()


async def _achunks(events: AsyncIterator[dict[str, Any]], req: payload.Request
                   ) -> AsyncIterator[GenericStreamingChunk]:
    converter = ChunkConverter(text_completion=req.text_completion)
    async for event in events:
        if converter.first:
            _priced(req, event, "completion" if req.text_completion else "chat")
        for chunk in converter.feed(event):
            yield chunk
    yield converter.finish()


class DockerModelRunnerLLM(CustomLLM):
    """Docker Model Runner over its OpenAI-compatible `/engines/<engine>/v1/...` API."""

    # ---- chat / text completion ------------------------------------------------------
    def _chat(self, model: str, messages: list, api_base: str | None, api_key: str | None,
              optional_params: dict, litellm_params: dict | None, headers: dict | None,
              stream: bool, logging_obj: Any) -> payload.Request:
        req = payload.chat_request(model, messages, optional_params, litellm_params,
                                   api_base, api_key, headers, stream)
        _log_pre_call(logging_obj, req, messages)
        return req

    def completion(self, model: str, messages: list, api_base: str | None,
                   custom_prompt_dict: dict, model_response: ModelResponse,
                   print_verbose: Callable, encoding: Any, api_key: str | None,
                   logging_obj: Any, optional_params: dict, acompletion: Any = None,
                   litellm_params: dict | None = None, logger_fn: Any = None,
                   headers: dict | None = None, timeout: float | httpx.Timeout | None = None,
                   client: Any = None) -> ModelResponse:
        req = self._chat(model, messages, api_base, api_key, optional_params, litellm_params,
                         headers, False, logging_obj)
        return _model_response(transport.post_json(req, timeout), req, model_response)

    async def acompletion(self, model: str, messages: list, api_base: str | None,
                          custom_prompt_dict: dict, model_response: ModelResponse,
                          print_verbose: Callable, encoding: Any, api_key: str | None,
                          logging_obj: Any, optional_params: dict, acompletion: Any = None,
                          litellm_params: dict | None = None, logger_fn: Any = None,
                          headers: dict | None = None,
                          timeout: float | httpx.Timeout | None = None,
                          client: Any = None) -> ModelResponse:
        req = self._chat(model, messages, api_base, api_key, optional_params, litellm_params,
                         headers, False, logging_obj)
        return _model_response(await transport.apost_json(req, timeout), req, model_response)

    def streaming(self, model: str, messages: list, api_base: str | None,
                  custom_prompt_dict: dict, model_response: ModelResponse,
                  print_verbose: Callable, encoding: Any, api_key: str | None,
                  logging_obj: Any, optional_params: dict, acompletion: Any = None,
                  litellm_params: dict | None = None, logger_fn: Any = None,
                  headers: dict | None = None, timeout: float | httpx.Timeout | None = None,
                  client: Any = None) -> Iterator[GenericStreamingChunk]:
        req = self._chat(model, messages, api_base, api_key, optional_params, litellm_params,
                         headers, True, logging_obj)
        # Not a generator itself: the request goes out now, so errors raise from the call.
        return _chunks(transport.stream_events(req, timeout), req)

    def astreaming(self, model: str, messages: list, api_base: str | None,
                   custom_prompt_dict: dict, model_response: ModelResponse,
                   print_verbose: Callable, encoding: Any, api_key: str | None,
                   logging_obj: Any, optional_params: dict, acompletion: Any = None,
                   litellm_params: dict | None = None, logger_fn: Any = None,
                   headers: dict | None = None,
                   timeout: float | httpx.Timeout | None = None,
                   client: Any = None) -> AsyncIterator[GenericStreamingChunk]:
        req = self._chat(model, messages, api_base, api_key, optional_params, litellm_params,
                         headers, True, logging_obj)
        # Not an async generator itself: the request goes out now (LiteLLM runs this in an
        # executor thread), so a dead server raises from acompletion() and the Router moves
        # on to another deployment, as for non-streaming calls.
        return _achunks(transport.astream_events(req, timeout), req)

    # ---- embeddings ------------------------------------------------------------------
    def _embed_request(self, model: str, input: list, optional_params: dict,
                       litellm_params: dict | None, api_base: str | None,
                       api_key: str | None, logging_obj: Any) -> payload.Request:
        req = payload.embedding_request(model, input, optional_params, litellm_params,
                                        api_base, api_key)
        _log_pre_call(logging_obj, req, input)
        return req

    def embedding(self, model: str, input: list, model_response: EmbeddingResponse,
                  print_verbose: Callable, logging_obj: Any, optional_params: dict,
                  api_key: str | None = None, api_base: str | None = None,
                  timeout: float | httpx.Timeout | None = None,
                  litellm_params: dict | None = None) -> EmbeddingResponse:
        req = self._embed_request(model, input, optional_params, litellm_params, api_base,
                                  api_key, logging_obj)
        data = transport.post_json(req, timeout)
        _priced(req, data, "embedding")
        return _tag(convert_to_model_response_object(
            response_object=data, model_response_object=model_response,
            response_type="embedding"), req)

    async def aembedding(self, model: str, input: list, model_response: EmbeddingResponse,
                         print_verbose: Callable, logging_obj: Any, optional_params: dict,
                         api_key: str | None = None, api_base: str | None = None,
                         timeout: float | httpx.Timeout | None = None,
                         litellm_params: dict | None = None) -> EmbeddingResponse:
        req = self._embed_request(model, input, optional_params, litellm_params, api_base,
                                  api_key, logging_obj)
        data = await transport.apost_json(req, timeout)
        _priced(req, data, "embedding")
        return _tag(convert_to_model_response_object(
            response_object=data, model_response_object=model_response,
            response_type="embedding"), req)

    # ---- images ----------------------------------------------------------------------
    def image_generation(self, model: str, prompt: str, api_key: str | None,
                         api_base: str | None, model_response: ImageResponse,
                         optional_params: dict, logging_obj: Any,
                         timeout: float | httpx.Timeout | None = None,
                         client: Any = None) -> ImageResponse:
        req = payload.image_request(model, prompt, optional_params, api_base, api_key)
        _log_pre_call(logging_obj, req, prompt)
        data = transport.post_json(req, timeout)
        _priced(req, None, "image_generation")
        return _tag(convert_to_model_response_object(
            response_object=data, model_response_object=model_response,
            response_type="image_generation"), req)

    async def aimage_generation(self, model: str, prompt: str, model_response: ImageResponse,
                                api_key: str | None, api_base: str | None,
                                optional_params: dict, logging_obj: Any,
                                timeout: float | httpx.Timeout | None = None,
                                client: Any = None) -> ImageResponse:
        req = payload.image_request(model, prompt, optional_params, api_base, api_key)
        _log_pre_call(logging_obj, req, prompt)
        data = await transport.apost_json(req, timeout)
        _priced(req, None, "image_generation")
        return _tag(convert_to_model_response_object(
            response_object=data, model_response_object=model_response,
            response_type="image_generation"), req)
