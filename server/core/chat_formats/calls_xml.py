"""Body parsers for formats that write tool calls as tags: one element per call, one per
argument (Qwen3-Coder's `<function=f><parameter=x>`, MiniMax's `<invoke name="f">`,
DeepSeek's DSML, GLM's `<arg_key>/<arg_value>` pairs, Kimi K3, MiniCPM5, Muse, Hunyuan).

Argument values are text; values.coerce reads them by the tool's schema (or by the type the
format writes beside them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from . import values
from .base import Call, Toolset


@dataclass(frozen=True)
class Tagged:
    """One call: `invoke` (a regex naming the tool in group `name`) ... `invoke_end`; in it,
    arguments: `param` (group `key`, optionally `type`) value `param_end`."""

    invoke: re.Pattern[str]
    invoke_end: str | None
    param: re.Pattern[str]
    param_end: str
    #: "newline": one newline after the opening and before the closing tag are layout.
    trim: str = "none"
    #: Values may be wrapped in <![CDATA[...]]> (MiniCPM5).
    cdata: bool = False

    def __call__(self, body: str, tools: Toolset) -> list[Call] | None:
        calls: list[Call] = []
        pos = 0
        while True:
            m = self.invoke.search(body, pos)
            if m is None:
                break
            if body[pos:m.start()].strip():
                return None
            if self.invoke_end is None:
                end, after = len(body), len(body)
            else:
                end = body.find(self.invoke_end, m.end())
                if end < 0:
                    end = after = len(body)
                else:
                    after = end + len(self.invoke_end)
            name = m.group("name").strip()
            args = self._arguments(body[m.end():end], name, tools)
            call = tools.call(name, args) if args is not None else None
            if call is None:
                return None
            calls.append(call)
            pos = after
        if body[pos:].strip() or not calls:
            return None
        return calls

    def _arguments(self, text: str, name: str, tools: Toolset) -> dict[str, Any] | None:
        args: dict[str, Any] = {}
        pos = 0
        while True:
            m = self.param.search(text, pos)
            if m is None:
                break
            if text[pos:m.start()].strip():
                return None
            start = m.end()
            if self.cdata and text.startswith("<![CDATA[", start):
                close = text.find("]]>", start)
                if close < 0:
                    return None
                raw = text[start + 9:close]
                end = text.find(self.param_end, close + 3)
                if end < 0 or text[close + 3:end].strip():
                    return None
            else:
                end = text.find(self.param_end, start)
                if end < 0:
                    return None
                raw = text[start:end]
            key = m.group("key").strip()
            schema = tools.property(name, key)
            if self.trim == "newline":
                raw = raw[1:] if raw.startswith("\n") else raw
                raw = raw[:-1] if raw.endswith("\n") else raw
            declared = m.groupdict().get("type")
            args[key] = values.coerce_typed(raw, declared, schema) if declared else \
                values.coerce(raw if "string" in values.schema_types(schema) else raw.strip(),
                              schema)
            pos = end + len(self.param_end)
        if text[pos:].strip():
            return None
        return args


def _name(group: str = "name") -> str:
    return rf'"(?P<{group}>[^"]*)"'


QWEN = Tagged(re.compile(r"<function=(?P<name>[^>\n]+)>"), "</function>",
              re.compile(r"<parameter=(?P<key>[^>\n]+)>"), "</parameter>", trim="newline")
SEED = Tagged(QWEN.invoke, "</function>", QWEN.param, "</parameter>")
MINIMAX = Tagged(re.compile(r"<invoke name=" + _name() + ">"), "</invoke>",
                 re.compile(r"<parameter name=" + _name("key") + ">"), "</parameter>")
DSML = Tagged(re.compile(r"<｜DSML｜invoke name=" + _name() + ">"), "</｜DSML｜invoke>",
              re.compile(r"<｜DSML｜parameter name=" + _name("key")
                         + r'(?: string="(?P<type>true|false)")?>'), "</｜DSML｜parameter>")
MINICPM = Tagged(re.compile(r"<function name=" + _name() + ">"), "</function>",
                 re.compile(r"<param name=" + _name("key") + ">"), "</param>", cdata=True)
MUSE = Tagged(re.compile(r"<atem:invoke name=" + _name() + ">"), "</atem:invoke>",
              re.compile(r"<atem:parameter name=" + _name("key") + ">"), "</atem:parameter>")
KIMI_K3 = Tagged(re.compile(r"<\|open\|>call tool=" + _name() + r"[^<]*?<\|sep\|>"),
                 "<|close|>call<|sep|>",
                 re.compile(r"<\|open\|>argument key=" + _name("key")
                            + r'(?: type="(?P<type>[^"]*)")?[^<]*?<\|sep\|>'),
                 "<|close|>argument<|sep|>")
GLM = Tagged(re.compile(r"^\s*(?P<name>[^\s<]+)"), None,
             re.compile(r"<arg_key>(?P<key>.*?)</arg_key>\s*<arg_value>", re.S), "</arg_value>")
HUNYUAN = Tagged(re.compile(r"<tool_call:opensource>(?P<name>[^<]+?)<tool_sep:opensource>"),
                 "</tool_call:opensource>",
                 re.compile(r"<arg_key:opensource>(?P<key>.*?)</arg_key:opensource>\s*"
                            r"<arg_value:opensource>", re.S), "</arg_value:opensource>")


# ------------------------------------------------------------------------ MiniMax M3

MM_NS = "]<]minimax[>["
_MM_OPEN = re.compile(re.escape(MM_NS) + r"<(?P<tag>[A-Za-z_][\w.\-]*)(?P<attrs>[^>]*)>")


def _mm_children(text: str) -> list[tuple[str, str, str]] | None:
    """Top-level `NS<tag attrs>inner NS</tag>` elements: (tag, attrs, inner); None if text
    other than white space lies between them."""
    out = []
    pos = 0
    while True:
        m = _MM_OPEN.search(text, pos)
        if m is None:
            break
        if text[pos:m.start()].strip():
            return None
        tag = m.group("tag")
        opener, closer = f"{MM_NS}<{tag}", f"{MM_NS}</{tag}>"
        depth, i = 1, m.end()
        while depth:
            j = text.find(closer, i)
            if j < 0:
                return None
            k = text.find(opener, i)
            if 0 <= k < j:
                depth, i = depth + 1, k + len(opener)
            else:
                depth, i = depth - 1, j + len(closer)
        out.append((tag, m.group("attrs"), text[m.end():i - len(closer)]))
        pos = i
    if text[pos:].strip():
        return None
    return out


def _mm_value(inner: str, schema: dict[str, Any] | None) -> Any:
    types = values.schema_types(schema)
    children = _mm_children(inner) if MM_NS in inner else None
    if not children or "string" in types:
        return values.coerce(inner if "string" in types else inner.strip(), schema)
    schema = schema or {}
    alternatives = [a for k in ("anyOf", "oneOf") for a in schema.get(k) or []
                    if isinstance(a, dict)]
    tags = {tag for tag, _, _ in children}
    if tags == {"item"}:
        chosen = next((a for a in alternatives if "array" in values.schema_types(a)), schema)
        items = chosen.get("items") if isinstance(chosen.get("items"), dict) else None
        return [_mm_value(v, items) for _, _, v in children]
    chosen = next((a for a in alternatives
                   if tags <= set((a.get("properties") or {}).keys())), schema)
    props = chosen.get("properties") or {}
    return {tag: _mm_value(v, props.get(tag)) for tag, _, v in children}


def minimax_m3(body: str, tools: Toolset) -> list[Call] | None:
    """MiniMax M3: `NS<invoke name="f">NS<city>Tokyo NS</city>NS</invoke>`, where objects are
    nested elements and arrays `<item>`s."""
    children = _mm_children(body)
    if not children:
        return None
    calls: list[Call | None] = []
    for tag, attrs, inner in children:
        m = re.match(r'\s*name="(?P<name>[^"]*)"', attrs)
        if tag != "invoke" or m is None:
            return None
        name = m.group("name")
        params = _mm_children(inner)
        if params is None:
            return None
        args = {key: _mm_value(v, tools.property(name, key)) for key, _, v in params}
        calls.append(tools.call(name, args))
    if any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


def xml_value(value: Any) -> str:
    """An argument value as XML-parameter formats write it: strings verbatim, others JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
