"""Tool instructions for templates that do not describe tools themselves.

Such a template gets the tool list in the system prompt, with the calling convention of the
model's chat format shown by example: the model's own (DeepSeek V3.1's template renders calls
but not tool definitions) or, for models without one, Hermes/Qwen's `<tool_call>` JSON, which
many GGUF chat models were trained on. How calls are parsed and forced is chat_formats/'s job.
"""

from __future__ import annotations

import json
import secrets

from .chat_formats.families import ChatFormat
from .types import Message, Tool, ToolCall


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def system_prompt_section(tools: list[Tool], fmt: ChatFormat) -> str:
    """The tools as JSON, and how to call one, in the format's convention."""
    listing = "\n".join(
        json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters},
                   ensure_ascii=False)
        for t in tools
    )
    example = fmt.call_text(ToolCall("", "<tool name>", '{"<argument>": "<value>"}'))
    return (
        "You can call the following tools. Each is described as JSON:\n"
        f"{listing}\n\n"
        "To call a tool, reply with only this, and nothing else:\n"
        f"{example}"
    )


def inject_into_system(messages: list[Message], section: str) -> list[Message]:
    if messages and messages[0].role == "system":
        first = messages[0]
        merged = Message("system", f"{first.content}\n\n{section}" if first.content else section)
        return [merged, *messages[1:]]
    return [Message("system", section), *messages]
