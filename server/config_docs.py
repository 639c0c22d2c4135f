"""The settings table of docs/configuration.md, made from `Settings` (server/config.py).

`python -m server.config_docs` rewrites the part of docs/configuration.md between the two
markers; `python -m server.config_docs --check` exits 1 when it is stale (a test does the same),
so the docs cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .config import Meta, table

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
BEGIN = "<!-- settings table: made by `python -m server.config_docs` from server/config.py -->"
END = "<!-- end of the settings table -->"


def _default(value: object, meta: Meta) -> str:
    if meta.shown:
        return meta.shown
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value in ([], {}, ""):
        return "none"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def render() -> str:
    """The table, as Markdown."""
    rows = ["| Setting | Flag | Environment | Default | Meaning |", "|---|---|---|---|---|"]
    for f, meta in table():
        value = f.default_factory() if callable(f.default_factory) else f.default
        flag = f"`{meta.flag}`" if meta.flag else ""
        env = f"`{meta.env}`" if meta.env else ""
        rows.append(f"| `{f.name}` | {flag} | {env} | {_default(value, meta)} | {meta.doc} |")
    return "\n".join(rows) + "\n"


def updated(text: str) -> str:
    """`text` (the page) with its table replaced by a fresh one."""
    head, sep, rest = text.partition(BEGIN + "\n")
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"{DOC}: the settings table markers are missing")
    return head + BEGIN + "\n" + render() + END + tail


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    fresh = updated(text)
    if "--check" in argv:
        if fresh != text:
            print(f"{DOC} is stale: run python -m server.config_docs", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
