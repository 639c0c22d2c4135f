"""How a format writes one tool call: the text before the arguments, the arguments (a JSON
object, or one element per argument), the text after.

One description serves three purposes: writing earlier calls into the history of templates
that cannot render them, showing the convention in the tool instructions of templates that do
not describe tools, and forcing a call (the prefix is prefilled, the rest constrained by a
grammar, gbnf.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import values
from .gbnf import Grammar, literal

NAME = "{name}"


@dataclass(frozen=True)
class Params:
    """Arguments as elements: `open` (with {key} and {flag}) value `close`, joined by `sep`.
    String values are written raw (up to the closing text), as JSON, or as Gemma 4 quotes;
    other values as JSON."""

    open: str
    close: str
    sep: str = ""
    strings: str = "raw"  # raw | json | gemma
    #: The {flag} of a parameter from its schema (DSML's string="true", Kimi K3's type=).
    flag: Callable[[dict[str, Any] | None], str] | None = None

    def head(self, key: str, schema: dict[str, Any] | None) -> str:
        flag = self.flag(schema) if self.flag else ""
        return self.open.replace("{key}", key).replace("{flag}", flag)

    def tail(self, key: str) -> str:
        return self.close.replace("{key}", key)

    def value(self, value: Any) -> str:
        if isinstance(value, str):
            if self.strings == "raw":
                return value
            if self.strings == "gemma":
                return f"{values.GEMMA_QUOTE}{value}{values.GEMMA_QUOTE}"
        if self.strings == "gemma":
            return values.gemma_literal(value)
        return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Convention:
    prefix: str
    suffix: str = ""
    params: Params | None = None

    def before(self, name: str) -> str:
        return self.prefix.replace(NAME, name)

    def after(self, name: str) -> str:
        return self.suffix.replace(NAME, name)

    @property
    def head(self) -> str:
        """What every call starts with, whatever the tool (up to its name)."""
        return self.prefix.split(NAME, 1)[0]

    def write(self, name: str, arguments: dict[str, Any],
              schema: dict[str, Any] | None = None) -> str:
        if self.params is None:
            body = json.dumps(arguments, ensure_ascii=False)
        else:
            props = (schema or {}).get("properties") or {}
            p = self.params
            body = p.sep.join(f"{p.head(k, props.get(k))}{p.value(v)}{p.tail(k)}"
                              for k, v in arguments.items())
        return f"{self.before(name)}{body}{self.after(name)}"

    # ------------------------------------------------------------------- grammars

    def arguments_rule(self, g: Grammar, name: str, schema: dict[str, Any]) -> str:
        """A grammar rule for the arguments of tool `name`, as this convention writes them."""
        rule = f"args-{name}"
        if self.params is None:
            return g.schema(schema or {"type": "object"}, rule, root=schema)
        props = (schema or {}).get("properties") or {}
        required = [k for k in props if k in (schema.get("required") or [])]
        optional = [k for k in props if k not in required]
        p = self.params
        pieces = {k: self._param_rule(g, rule, k, props[k], schema) for k in props}
        sep = f" {literal(p.sep)} " if p.sep else " "
        body = sep.join(pieces[k] for k in required)
        for k in optional:
            joiner = literal(p.sep) + " " if p.sep and (required or k != optional[0]) else ""
            body += f" ( {joiner}{pieces[k]} )?"
        if not props:
            return g.rule(rule, '""')
        return g.rule(rule, body.strip() or '""')

    def _param_rule(self, g: Grammar, rule: str, key: str, schema: Any,
                    root: dict[str, Any]) -> str:
        p = self.params
        assert p is not None
        schema = schema if isinstance(schema, dict) else {}
        raw_string = values.schema_types(schema) == {"string"} and not schema.get("enum")
        choices = schema.get("enum") or ([schema["const"]] if "const" in schema else None)
        if choices and all(isinstance(c, str) for c in choices) and p.strings != "json":
            # A choice of strings is written as the strings themselves (raw, or quoted).
            quote = values.GEMMA_QUOTE if p.strings == "gemma" else ""
            value = g.rule(f"{rule}-{key}-choice",
                           " | ".join(literal(f"{quote}{c}{quote}") for c in choices))
        elif raw_string and p.strings == "raw":
            value = g.excluding(p.tail(key), f"{rule}-{key}-text")
        elif raw_string and p.strings == "gemma":
            quote = literal(values.GEMMA_QUOTE)
            value = g.rule(f"{rule}-{key}-str",
                           f"{quote} {g.excluding(values.GEMMA_QUOTE, f'{rule}-{key}-q')} {quote}")
        else:
            value = g.schema(schema, f"{rule}-{key}", root=root)
        return g.rule(f"{rule}-{key}-param",
                      f"{literal(p.head(key, schema))} {value} {literal(p.tail(key))}")

    def grammar(self, tools: list[tuple[str, dict[str, Any]]], *, from_head: bool) -> str:
        """A GBNF grammar for one call to one of `tools` ((name, schema) pairs): the part after
        the head (several tools) or after the whole prefix (one tool), through the suffix."""
        g = Grammar()
        alts = []
        for name, schema in tools:
            lead = self.before(name)[len(self.head):] if from_head else ""
            parts = [literal(lead)] if lead else []
            parts.append(self.arguments_rule(g, name, schema))
            if self.after(name):
                parts.append(literal(self.after(name)))
            alts.append(g.rule(f"call-{name}", " ".join(parts)))
        g.rules = {"root": " | ".join(alts), **g.rules}
        return g.text("root")


def flag_string(schema: dict[str, Any] | None) -> str:
    """DSML: string="true" for string parameters, "false" for JSON ones."""
    return "true" if values.schema_types(schema) == {"string"} else "false"


def flag_type(schema: dict[str, Any] | None) -> str:
    """Kimi K3: the parameter's JSON type (string values stay raw)."""
    types = values.schema_types(schema)
    if types == {"string"}:
        return "string"
    if types and types <= {"integer", "number"}:
        return "number"
    return sorted(types)[0] if len(types) == 1 else "json"
