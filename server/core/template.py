"""Chat template rendering: the model's own Jinja template, in a sandbox.

Templates come from GGUF files and model artifacts, so they are untrusted: they run in Jinja's
sandbox (no attribute access to Python internals). Within it the environment behaves like the
ones templates are written for (Hugging Face transformers, llama.cpp's Jinja engine): lists and
namespaces may be mutated (`list.append`), `{% generation %}` blocks render their body,
undefined values are empty rather than fatal, `tojson` takes transformers' arguments and
serialises iterables. How a conversation is fitted to what a template accepts (roles, tool
calls, tool results) is `template_caps.py`'s job.
"""

from __future__ import annotations

import datetime
import json
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import SandboxedEnvironment

from .errors import InvalidRequest

#: Used when a GGUF file has no template of its own.
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class TemplateRejected(InvalidRequest):
    """The template called raise_exception: it refuses this conversation."""


def _raise(message: str) -> None:
    raise TemplateRejected(f"the model's chat template rejected the conversation: {message}")


class _Lenient(jinja2.ChainableUndefined):
    """An undefined value that is empty in every use (as in llama.cpp's Jinja engine), so a
    template reading a field our messages lack does not fail the request."""

    def __add__(self, other: Any) -> Any:
        return other

    def __radd__(self, other: Any) -> Any:
        return other


class _Generation(Extension):
    """transformers' `{% generation %}...{% endgeneration %}` marks the assistant's tokens for
    training masks; for inference it renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):  # type: ignore[no-untyped-def]
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _plain(value: Any) -> Any:
    """A value as json.dumps can write it: iterables become lists, undefined becomes null."""
    if isinstance(value, jinja2.Undefined):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__")
                                            and not isinstance(value, (str, bytes))):
        return [_plain(v) for v in value]
    return value


def _tojson(value: Any, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False, ensure_ascii: bool = False, **_: Any) -> str:
    return json.dumps(_plain(value), ensure_ascii=ensure_ascii, indent=indent,
                      separators=tuple(separators) if separators else None, sort_keys=sort_keys)


@lru_cache(maxsize=64)
def compile_template(source: str) -> jinja2.Template:
    """The compiled template; a syntax error is the model's fault, reported as a bad model."""
    env = SandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=_Lenient,
                               extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do",
                                           _Generation])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidRequest(f"the model's chat template cannot be read: {exc}") from exc


def render_dicts(source: str | None, messages: list[dict[str, Any]], *,
                 tools: list[dict[str, Any]] | None = None, bos_token: str = "",
                 eos_token: str = "", add_generation_prompt: bool = True,
                 extra: dict[str, Any] | None = None) -> str:
    """Render messages already in the template's shape (see template_caps.py). `tools` is left
    undefined when there are none, as llama.cpp does: templates test `tools is defined`, and
    several iterate it unguarded."""
    template = compile_template(source or CHATML)
    variables: dict[str, Any] = {
        "messages": messages, "add_generation_prompt": add_generation_prompt,
        "bos_token": bos_token, "eos_token": eos_token, **(extra or {}),
    }
    if tools:
        variables["tools"] = tools
    try:
        return template.render(**variables)
    except InvalidRequest:
        raise
    except jinja2.TemplateError as exc:
        raise InvalidRequest(f"the model's chat template failed on this conversation: {exc}") from exc
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError,
            RecursionError) as exc:
        raise InvalidRequest(f"the model's chat template failed on this conversation: {exc}") from exc
