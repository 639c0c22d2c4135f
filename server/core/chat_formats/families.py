"""The chat formats of the model families llama.cpp's template collection covers.

Each `ChatFormat` pairs an output syntax (what reasoning and calls look like when the model
writes them) with the convention for writing a call (conventions.py). Detection from the
template is detect.py's job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..types import Tool, ToolCall
from . import calls_json as cj
from . import calls_xml as cx
from .base import StreamParser, Toolset
from .channels import FUNCTIONARY_V32, HARMONY, MUSE_CHANNELS, ChannelParser, Channels
from .conventions import Convention, Params, flag_string, flag_type
from .scanner import Block, MarkupParser, Syntax

THINK = ("<think>", "</think>")


@dataclass(frozen=True)
class ChatFormat:
    name: str
    #: Who writes it (for docs/models.md and /api/show).
    label: str
    convention: Convention
    syntax: Syntax = field(default_factory=Syntax)
    channels: Channels | None = None
    #: The format has a tool-call syntax of its own (else: ours, in the system prompt).
    native_tools: bool = True
    #: Template variables some templates need (Firefunction's `functions`).
    variables: str = ""

    def markers(self) -> set[str]:
        """Every marker text the output syntax is made of (some are control tokens, which the
        engine must then emit as text: GenerationJob.preserve)."""
        out = {m for pair in self.syntax.think for m in pair}
        out |= {m for b in self.syntax.blocks for m in (b.start, b.end) if m}
        out |= set(self.syntax.drop) | set(self.syntax.open_is_reasoning)
        if self.channels is not None:
            ch = self.channels
            out |= {ch.header_end, *ch.body_ends, *ch.starts, *ch.header_begins}
        return {m for m in out if m}

    @property
    def thinking(self) -> bool:
        return bool(self.syntax.think) or self.channels is HARMONY or \
            self.channels is MUSE_CHANNELS

    def opened_reasoning(self, prompt: str) -> tuple[str, str] | None:
        """The reasoning tags the prompt leaves open (the model starts inside reasoning)."""
        return None if self.channels else self.syntax.opened_by(prompt)

    def parser(self, tools: list[Tool], prompt: str = "", *, start: str = "auto",
               parse_reasoning: bool = True) -> StreamParser:
        """A parser for output that follows `prompt`; `start` "content" when the prompt ends
        in a prefilled answer, "reasoning" in prefilled reasoning."""
        toolset = Toolset.of(tools)
        if self.channels is not None:
            begin = {"auto": "header", "content": "text"}.get(start, start)
            return ChannelParser(self.channels, toolset, start=begin)
        close = opening = None
        if start == "auto":
            pair = self.syntax.opened_by(prompt) if parse_reasoning else None
            if pair:
                start, (opening, close) = "reasoning", pair
        return MarkupParser(self.syntax, toolset, start=start, close=close,
                            parse_reasoning=parse_reasoning, opening=opening)

    def call_text(self, call: ToolCall, schema: dict[str, Any] | None = None) -> str:
        try:
            args = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            args = {"arguments": call.arguments}
        if not isinstance(args, dict):
            args = {"value": args}
        return self.convention.write(call.name, args, schema)

    def template_variables(self, tools: list[Tool]) -> dict[str, Any]:
        if self.variables == "functions" and tools:
            listing = [{"name": t.name, "description": t.description,
                        "parameters": t.parameters} for t in tools]
            return {"functions": json.dumps(listing, indent=2)}
        return {}


def _fmt(name: str, label: str, convention: Convention, **kw: Any) -> ChatFormat:
    return ChatFormat(name, label, convention, **kw)


QWEN_PARAMS = Params("<parameter={key}>\n", "\n</parameter>\n")
GLM_PARAMS = Params("<arg_key>{key}</arg_key>\n<arg_value>", "</arg_value>\n")
GLM_COMPACT = Params("<arg_key>{key}</arg_key><arg_value>", "</arg_value>")
HERMES_CALL = Convention('<tool_call>\n{"name": "{name}", "arguments": ', "}\n</tool_call>")
NS = cx.MM_NS

FORMATS: dict[str, ChatFormat] = {f.name: f for f in [
    _fmt("hermes", "Hermes / Qwen 2.5-3 / Granite 4 (<tool_call> JSON)", HERMES_CALL,
         syntax=Syntax((THINK,), blocks=(Block("<tool_call>", "</tool_call>", cj.json_calls),),
                       bare=cj.json_sequence)),
    _fmt("qwen3-coder", "Qwen3-Coder / Qwen3.5 / Nemotron 3 / StepFun (XML parameters)",
         Convention("<tool_call>\n<function={name}>\n", "</function>\n</tool_call>",
                    QWEN_PARAMS),
         syntax=Syntax((THINK,), blocks=(Block("<tool_call>", "</tool_call>", cx.QWEN),
                                         Block("<function=", "</tool_call>", cx.QWEN, True)))),
    _fmt("seed-oss", "ByteDance Seed-OSS", Convention(
        "<seed:tool_call>\n<function={name}>\n", "</function>\n</seed:tool_call>",
        Params("<parameter={key}>", "</parameter>\n")),
        syntax=Syntax((("<seed:think>", "</seed:think>"),),
                      blocks=(Block("<seed:tool_call>", "</seed:tool_call>", cx.SEED),))),
    _fmt("glm", "GLM 4.5/4.6 / Ling 3 / Laguna (<arg_key>/<arg_value>)",
         Convention("<tool_call>{name}\n", "</tool_call>", GLM_PARAMS),
         syntax=Syntax((THINK,), blocks=(Block("<tool_call>", "</tool_call>", cx.GLM),),
                       drop=("<|role_end|>",))),
    _fmt("glm-compact", "GLM 4.7 / Spark 2.5 / Laguna S (compact <arg_key>)",
         Convention("<tool_call>{name}", "</tool_call>", GLM_COMPACT),
         syntax=Syntax((THINK,), blocks=(Block("<tool_call>", "</tool_call>", cx.GLM),))),
    _fmt("hunyuan", "Tencent Hunyuan 3", Convention(
        "<tool_calls:opensource>\n<tool_call:opensource>{name}<tool_sep:opensource>\n",
        "</tool_call:opensource>\n</tool_calls:opensource>",
        Params("<arg_key:opensource>{key}</arg_key:opensource>\n<arg_value:opensource>",
               "</arg_value:opensource>\n")),
        syntax=Syntax((("<think:opensource>", "</think:opensource>"),), blocks=(
            Block("<tool_calls:opensource>", "</tool_calls:opensource>", cx.HUNYUAN),))),
    _fmt("minimax-m2", "MiniMax M2 (<minimax:tool_call> <invoke>)", Convention(
        '<minimax:tool_call>\n<invoke name="{name}">\n', "</invoke>\n</minimax:tool_call>",
        Params('<parameter name="{key}">', "</parameter>\n")),
        syntax=Syntax((THINK,), blocks=(
            Block("<minimax:tool_call>", "</minimax:tool_call>", cx.MINIMAX),))),
    _fmt("minimax-m3", "MiniMax M3 (namespaced <invoke>)", Convention(
        f'{NS}<tool_call>\n{NS}<invoke name="{{name}}">', f"{NS}</invoke>\n{NS}</tool_call>",
        Params(f"{NS}<{{key}}>", f"{NS}</{{key}}>")),
        syntax=Syntax((("<mm:think>", "</mm:think>"),), blocks=(
            Block(f"{NS}<tool_call>", f"{NS}</tool_call>", cx.minimax_m3),))),
    _fmt("minimax-m1", "MiniMax M1 (<tool_calls> JSON lines)", Convention(
        '<tool_calls>\n{"name": "{name}", "arguments": ', "}\n</tool_calls>"),
        syntax=Syntax((THINK,), blocks=(Block("<tool_calls>", "</tool_calls>",
                                              cj.json_lines),))),
    _fmt("dsml", "DeepSeek V3.2 (DSML function_calls)", Convention(
        '<｜DSML｜function_calls>\n<｜DSML｜invoke name="{name}">\n',
        "</｜DSML｜invoke>\n</｜DSML｜function_calls>",
        Params('<｜DSML｜parameter name="{key}" string="{flag}">', "</｜DSML｜parameter>\n",
               flag=flag_string)),
        syntax=Syntax((THINK,), blocks=(
            Block("<｜DSML｜function_calls>", "</｜DSML｜function_calls>", cx.DSML),
            Block("<｜DSML｜tool_calls>", "</｜DSML｜tool_calls>", cx.DSML)))),
    _fmt("dsml-v4", "DeepSeek V4 (DSML tool_calls)", Convention(
        '<｜DSML｜tool_calls>\n<｜DSML｜invoke name="{name}">\n',
        "</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
        Params('<｜DSML｜parameter name="{key}" string="{flag}">', "</｜DSML｜parameter>\n",
               flag=flag_string)),
        syntax=Syntax((THINK,), blocks=(
            Block("<｜DSML｜tool_calls>", "</｜DSML｜tool_calls>", cx.DSML),
            Block("<｜DSML｜function_calls>", "</｜DSML｜function_calls>", cx.DSML)))),
    _fmt("deepseek-r1", "DeepSeek R1 (tool▁calls, ```json)", Convention(
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n",
        "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"),
        syntax=Syntax((THINK,), blocks=(
            Block("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", cj.deepseek_calls),
            Block(cj.DS_CALL, cj.DS_END, cj.deepseek_calls, True)))),
    _fmt("deepseek-v3.1", "DeepSeek V3.1 (tool▁calls)", Convention(
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>{name}<｜tool▁sep｜>",
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>"),
        syntax=Syntax((THINK,), blocks=(
            Block("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", cj.deepseek_calls),
            Block(cj.DS_CALL, cj.DS_END, cj.deepseek_calls, True)))),
    _fmt("mistral", "Mistral Small 3 / Devstral / Magistral ([TOOL_CALLS]name[ARGS])",
         Convention("[TOOL_CALLS]{name}[ARGS]"),
         syntax=Syntax((("[THINK]", "[/THINK]"),),
                       blocks=(Block("[TOOL_CALLS]", None, cj.mistral_calls),))),
    _fmt("mistral-nemo", "Mistral Nemo ([TOOL_CALLS] JSON list)", Convention(
        '[TOOL_CALLS][{"name": "{name}", "arguments": ', ', "id": "a1b2c3d4e"}]'),
        syntax=Syntax(blocks=(Block("[TOOL_CALLS]", None, cj.mistral_calls),))),
    _fmt("llama3", "Llama 3.1-3.3 (JSON with parameters, <|python_tag|>)", Convention(
        '{"name": "{name}", "parameters": ', "}"),
        syntax=Syntax(blocks=(Block("<|python_tag|>", None, cj.python_tag),),
                      bare=cj.json_sequence)),
    _fmt("functionary-v3.1", "Functionary v3.1 (<function=name>)", Convention(
        "<function={name}>", "</function>"),
        syntax=Syntax(blocks=(Block("<function=", "</function>", cj.name_then_json),
                              Block("<|python_tag|>", None, cj.python_tag)))),
    _fmt("functionary-v3.2", "Functionary v3.2 (>>>recipient)", Convention("{name}\n"),
         channels=FUNCTIONARY_V32),
    _fmt("firefunction", "FireFunction v2 ( functools[...])", Convention(
        ' functools[{"name": "{name}", "arguments": ', "}]"),
        syntax=Syntax(blocks=(Block("functools", None, cj.json_calls),)),
        variables="functions"),
    _fmt("harmony", "gpt-oss (harmony channels)", Convention(
        "<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"),
        channels=HARMONY),
    _fmt("muse", "Muse Glimmer (to=recipient, <atem:invoke>)", Convention(
        ' to={name}<|message|><atem:function_calls>\n<atem:invoke name="{name}">\n',
        "</atem:invoke>\n</atem:function_calls>",
        Params('<atem:parameter name="{key}">', "</atem:parameter>\n")),
        channels=MUSE_CHANNELS),
    _fmt("kimi-k2", "Kimi K2 (tool_calls_section)", Convention(
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.{name}:0"
        "<|tool_call_argument_begin|>", "<|tool_call_end|><|tool_calls_section_end|>"),
        syntax=Syntax((THINK,), blocks=(
            Block("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", cj.kimi_calls),
            Block(cj.KIMI_CALL, None, cj.kimi_calls, True)))),
    _fmt("kimi-k3", "Kimi K3 (<|open|> sections)", Convention(
        '<|open|>tools<|sep|><|open|>call tool="{name}" index="1"<|sep|>',
        "<|close|>call<|sep|><|close|>tools<|sep|>",
        Params('<|open|>argument key="{key}" type="{flag}"<|sep|>', "<|close|>argument<|sep|>",
               flag=flag_type)),
        syntax=Syntax((("<|open|>think<|sep|>", "<|close|>think<|sep|>"),
                       ("<|open|>think<|sep|>", "<|open|>response<|sep|>")),
                      blocks=(Block("<|open|>tools<|sep|>", "<|close|>tools<|sep|>",
                                    cx.KIMI_K3),),
                      drop=("<|open|>response<|sep|>", "<|close|>response<|sep|>",
                            "<|close|>message<|sep|>"))),
    _fmt("command-r7b", "Command R7B (<|START_ACTION|>)", Convention(
        '<|START_ACTION|>[\n    {"tool_call_id": "0", "tool_name": "{name}", "parameters": ',
        "}\n]<|END_ACTION|>"),
        syntax=Syntax((("<|START_THINKING|>", "<|END_THINKING|>"),),
                      blocks=(Block("<|START_ACTION|>", "<|END_ACTION|>", cj.cohere_actions),),
                      drop=("<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_TEXT|>",
                            "<|END_TEXT|>"))),
    _fmt("command-r-plus", "Command R+ (Action: ```json)", Convention(
        'Action:\n```json\n[\n    {\n        "tool_name": "{name}",\n        "parameters": ',
        "\n    }\n]\n```"),
        syntax=Syntax(blocks=(Block("Action:", None, cj.cohere_actions),),
                      drop=("<|CHATBOT_TOKEN|>", "<|END_OF_TURN_TOKEN|>"))),
    _fmt("granite-3", "Granite 3.x (<|tool_call|>)", Convention(
        '<|tool_call|>[{"name": "{name}", "arguments": ', "}]"),
        syntax=Syntax((THINK,), blocks=(Block("<|tool_call|>", None, cj.json_calls),),
                      drop=("<response>", "</response>"))),
    _fmt("nemotron-v2", "Nemotron Nano v2 (<TOOLCALL>)", Convention(
        '<TOOLCALL>[{"name": "{name}", "arguments": ', "}]</TOOLCALL>"),
        syntax=Syntax((THINK,), blocks=(Block("<TOOLCALL>", "</TOOLCALL>", cj.json_calls),))),
    _fmt("apriel", "Apriel 1.5/1.6 (<tool_calls>, [BEGIN FINAL RESPONSE])", Convention(
        '<tool_calls>[{"name": "{name}", "arguments": ', "}]</tool_calls>"),
        syntax=Syntax((("Here are my reasoning steps:", "[BEGIN FINAL RESPONSE]"),
                       ("<thinking>", "</thinking>")),
                      blocks=(Block("<tool_calls>", "</tool_calls>", cj.json_calls),),
                      drop=("[END FINAL RESPONSE]", "<|end|>"),
                      open_is_reasoning=("Here are my reasoning steps:",))),
    _fmt("apertus", "Apertus (<|tools_prefix|>)", Convention(
        '<|tools_prefix|>[{"{name}": ', "}]<|tools_suffix|>"),
        syntax=Syntax(blocks=(Block("<|tools_prefix|>", "<|tools_suffix|>",
                                    cj.name_keyed),))),
    _fmt("gigachat3", "GigaChat 3 (function call<|role_sep|>)", Convention(
        '<|message_sep|>\n\nfunction call<|role_sep|>\n{"name": "{name}", "arguments": ', "}"),
        syntax=Syntax(blocks=(Block("<|message_sep|>\n\nfunction call<|role_sep|>", None,
                                    cj.json_calls),))),
    _fmt("gigachat3.1", "GigaChat 3.1 (<|function_call|>)", Convention(
        '<|function_call|>{"name": "{name}", "arguments": ', "}"),
        syntax=Syntax(blocks=(Block("<|function_call|>", None, cj.json_calls),))),
    _fmt("lfm2", "LFM2 (<|tool_call_start|>[f(x=1)])", Convention(
        "<|tool_call_start|>[{name}(", ")]<|tool_call_end|>",
        Params("{key}=", "", sep=", ", strings="json")),
        syntax=Syntax((THINK,), blocks=(Block("<|tool_call_start|>", "<|tool_call_end|>",
                                              cj.python_list),))),
    _fmt("gemma4", "Gemma 4 (<|tool_call>call:)", Convention(
        "<|tool_call>call:{name}{", "}<tool_call|>",
        Params("{key}:", "", sep=",", strings="gemma")),
        syntax=Syntax((("<|channel>thought", "<channel|>"),), think_anywhere=True,
                      blocks=(Block("<|tool_call>call:", "<tool_call|>", cj.gemma_calls),),
                      drop=("<channel|>", "<|channel>"))),
    _fmt("minicpm5", "MiniCPM 5 (<function name=>)", Convention(
        '<function name="{name}">', "</function>", Params('<param name="{key}">', "</param>")),
        syntax=Syntax((THINK,), blocks=(Block('<function name="', "</function>", cx.MINICPM,
                                              True),))),
    _fmt("solar", "Solar Open (<|tool_calls|>)", Convention(
        "<|tool_calls|><|tool_call:begin|>call_0<|tool_call:name|>{name}<|tool_call:args|>",
        "<|tool_call:end|><|calls|>"),
        syntax=Syntax((("<|think|>", "<|end|>"),),
                      blocks=(Block("<|tool_calls|>", "<|calls|>", cj.solar_calls),),
                      drop=("<|begin|>assistant", "<|content|>", "<|end|>"))),
]}
