"""Which chat format a model speaks, read from its chat template.

Templates write earlier tool calls (and describe the calling convention) in the model's own
syntax, so the markers they contain name the format. Rules go from the most specific markers to
the most generic; a template with no tool syntax of its own gets ours (Hermes `<tool_call>`,
described in the system prompt) with the reasoning tags it knows.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from ..template_caps import sample
from .families import FORMATS, ChatFormat
from .scanner import Syntax

#: (format, markers that must all appear in the template), first match wins.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("harmony", ("<|channel|>", "<|message|>")),
    ("muse", ("<atem:function_calls>",)),
    ("functionary-v3.2", (">>>all",)),
    ("kimi-k2", ("<|tool_calls_section_begin|>",)),
    ("kimi-k3", ("<|open|>", "<|close|>", "<|sep|>")),
    ("command-r7b", ("<|START_ACTION|>",)),
    ("command-r-plus", ("Action:", "tool_name")),
    ("minimax-m3", ("]<]minimax[>[",)),
    ("minimax-m2", ("<minimax:tool_call>",)),
    ("dsml", ("DSML", "dsml_token", "function_calls")),
    ("dsml-v4", ("DSML", "dsml_token")),
    ("gemma4", ("<|tool_call>", "call:")),
    ("seed-oss", ("<seed:tool_call>",)),
    ("minicpm5", ('<function name="', '<param name="')),
    ("hunyuan", ("<tool_call:opensource>",)),
    ("glm-compact", ("<arg_key>", "<arg_value>", "</arg_key><arg_value>")),
    ("glm", ("<arg_key>", "<arg_value>")),
    ("qwen3-coder", ("<tool_call>", "<function=", "<parameter=")),
    ("deepseek-r1", ("tool▁calls▁begin", "function<｜tool▁sep｜>")),
    ("deepseek-r1", ("tool▁calls▁begin", "```json")),
    ("deepseek-v3.1", ("tool▁calls▁begin",)),
    ("mistral", ("[TOOL_CALLS]", "[ARGS]")),
    ("mistral-nemo", ("[TOOL_CALLS]",)),
    ("lfm2", ("<|tool_list_start|>",)),
    ("lfm2", ("List of tools: [",)),
    ("lfm2", ("<|tool_call_start|>",)),
    ("apertus", ("<|tools_prefix|>",)),
    ("nemotron-v2", ("<TOOLCALL>",)),
    ("granite-3", ("<|tool_call|>",)),
    ("apriel", ("<tool_calls>", "FINAL RESPONSE")),
    ("minimax-m1", ("<tool_calls>",)),
    ("gigachat3.1", ("<|function_call|>",)),
    ("gigachat3", ("function call<|role_sep|>",)),
    ("solar", ("<|tool_calls|>", "<|tool_call:begin|>")),
    ("firefunction", ("functools",)),
    ("functionary-v3.1", ("<function=", "<|python_tag|>")),
    ("llama3", ("<|python_tag|>",)),
    ("llama3", ("<|start_header_id|>", '"parameters"')),
    ("hermes", ("<tool_call>",)),
]

#: Reasoning tags a template may know without a tool syntax of its own.
_THINK_TAGS = (("<think>", "</think>"), ("<seed:think>", "</seed:think>"),
               ("[THINK]", "[/THINK]"))


@lru_cache(maxsize=64)
def detect(source: str | None) -> ChatFormat:
    """The format of a chat template (None or unknown: ours, Hermes with <think>). The rules
    read the template's source and its own rendering of a call (template_caps.sample):
    templates often build their markers from pieces."""
    text = (source or "") + "\n" + sample(source)
    for name, markers in RULES:
        if all(m in text for m in markers):
            fmt = FORMATS[name]
            return _with_template_reasoning(fmt, text) if name == "hermes" else fmt
    fallback = FORMATS["hermes"]
    think = tuple(p for p in _THINK_TAGS if p[0] in text) or (fallback.syntax.think)
    syntax = dataclasses.replace(fallback.syntax, think=think)
    return dataclasses.replace(fallback, name="hermes-fallback", native_tools=False,
                               label="our <tool_call> JSON convention (in the system prompt)",
                               syntax=syntax)


def _with_template_reasoning(fmt: ChatFormat, text: str) -> ChatFormat:
    think = tuple(p for p in _THINK_TAGS if p[0] in text)
    if not think or think == fmt.syntax.think:
        return fmt
    return dataclasses.replace(fmt, syntax=Syntax(think, fmt.syntax.think_anywhere,
                                                  fmt.syntax.blocks, fmt.syntax.drop,
                                                  fmt.syntax.bare))


def supports_thinking(source: str | None) -> bool:
    """Whether the model reasons in a format we parse (its template knows reasoning tags)."""
    fmt = detect(source)
    if fmt.channels is not None:
        return fmt.thinking
    text = (source or "") + sample(source)
    return any(opening.strip() and opening in text for opening, _ in fmt.syntax.think)


def describe(source: str | None) -> dict[str, object]:
    """The chat format as `dmr inspect` and /api/show report it."""
    from ..template_caps import probe

    fmt = detect(source)
    caps = probe(source)
    return {"name": fmt.name, "family": fmt.label,
            "native_tools": fmt.native_tools,
            "tools_in_template": caps.tool_definitions,
            "thinking": supports_thinking(source)}
