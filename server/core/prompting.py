"""From a chat request to the prompt text: the model's template, tools, prefill, forced call.

The template is the model's effective one (a DMR template layer wins over the GGUF's own, see
runtime.py); its chat format (chat_formats/) decides how tools are shown, how earlier calls are
written, and how a forced call starts.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from . import reasoning, template_caps
from .chat_formats.detect import detect
from .chat_formats.families import ChatFormat
from .chat_formats.forced import ForcedCall, forced_call
from .engine import ModelInfo
from .errors import InvalidRequest, NotSupported
from .tools import inject_into_system, system_prompt_section
from .types import ChatRequest


@dataclass
class Prompt:
    text: str
    forced: ForcedCall | None
    fmt: ChatFormat
    #: How the output begins: "auto" (as the prompt leaves it), "content" (a prefilled answer).
    start: str = "auto"
    #: Set when thinking comes first (reasoning.py): what starts the answer after it.
    answer_prefix: str | None = None


def _variables(req: ChatRequest, fmt: ChatFormat, tools) -> dict:
    now = datetime.datetime.now()
    extra = {"date_string": now.strftime("%d %b %Y"), "datetime": now.strftime("%b %d %Y"),
             **fmt.template_variables(tools)}
    if req.thinking.enabled is not None:
        extra["enable_thinking"] = req.thinking.enabled
    return extra


def build_prompt(info: ModelInfo, req: ChatRequest, source: str | None = None) -> Prompt:
    """Render the conversation, tools and any prefill into the model's prompt text.
    `source` is the model's effective template (default: the GGUF's)."""
    if source is None:
        source = info.chat_template
    if not req.messages:
        raise InvalidRequest("messages must contain at least one message", param="messages")
    if not info.has_vision and any(m.images for m in req.messages):
        raise NotSupported("this model does not support images (no vision projector)",
                           param="messages")
    fmt = detect(source)
    caps = template_caps.probe(source)
    messages = list(req.messages)
    thinking_first = reasoning.two_phase(source, req.thinking)
    if thinking_first:
        messages = reasoning.with_history(source, messages)
    tools = [] if req.tool_choice.mode == "none" else req.tools
    template_tools = None
    if tools:
        if caps.tool_definitions:
            template_tools = tools
        else:
            messages = inject_into_system(messages, system_prompt_section(tools, fmt))
    prefill = ""
    if messages[-1].role == "assistant" and not messages[-1].tool_calls and req.prefill_assistant:
        prefill = messages[-1].content
        messages = messages[:-1]
    text = template_caps.render(source, messages, tools=template_tools,
                                bos_token=info.bos_token, eos_token=info.eos_token,
                                add_generation_prompt=True,
                                extra=_variables(req, fmt, template_tools or []),
                                call_text=fmt.call_text)
    forced = forced_call(fmt, tools, req.tool_choice, text + prefill)
    answer_prefix = prefill + (forced.prefill if forced else "")
    if thinking_first:
        return Prompt(text + reasoning.opening(source, text), forced, fmt, "content",
                      answer_prefix)
    text += answer_prefix
    # A prefilled answer is continued as an answer, unless it leaves reasoning open.
    start = "content" if prefill and not fmt.opened_reasoning(text) else "auto"
    return Prompt(text, forced, fmt, start)
