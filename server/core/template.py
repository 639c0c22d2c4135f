"""Chat template rendering: the model's own Jinja template, in a sandbox.

Templates come from GGUF files, so they are untrusted: they run in Jinja's immutable sandbox.
Models whose template does not know about tools get the tool list and the calling convention
in their system prompt instead (see tools.py).
"""

from __future__ import annotations

import datetime
import json
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import InvalidRequest
from .types import Message, Tool

#: Used when a GGUF file has no template of its own.
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _raise(message: str) -> None:
    raise InvalidRequest(f"the model's chat template rejected the conversation: {message}")


@lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda v, indent=None, **_: json.dumps(v, ensure_ascii=False,
                                                                    indent=indent)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(source)


def supports_tools(source: str | None) -> bool:
    return bool(source) and "tools" in source


def _message_dict(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": _loads_or_text(c.arguments)}}
            for c in m.tool_calls
        ]
    if m.tool_call_id:
        d["tool_call_id"] = m.tool_call_id
    if m.name:
        d["name"] = m.name
    if m.reasoning:
        d["reasoning_content"] = m.reasoning
    return d


def _loads_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def render(source: str | None, messages: list[Message], *, tools: list[Tool] | None = None,
           bos_token: str = "", eos_token: str = "", add_generation_prompt: bool = True,
           extra: dict[str, Any] | None = None) -> str:
    """Render a conversation into the prompt text the model was trained on."""
    template = _compile(source or CHATML)
    tool_dicts = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                    "parameters": t.parameters}}
                  for t in tools or []]
    try:
        return template.render(
            messages=[_message_dict(m) for m in messages],
            tools=tool_dicts or None,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **(extra or {}),
        )
    except InvalidRequest:
        raise
    except jinja2.TemplateError as exc:
        raise InvalidRequest(f"the model's chat template failed on this conversation: {exc}") from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidRequest(f"the model's chat template failed on this conversation: {exc}") from exc
