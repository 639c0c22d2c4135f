"""A test-only hook: force a model's output with a grammar, to check parsing end to end.

A small model cannot be asked to write, say, Qwen3-Coder's XML tool calls; a grammar can make
it. When the environment variable DMR_TEST_OUTPUT_GRAMMARS names a JSON file mapping model
names to GBNF grammars, chat requests to those models are generated under that grammar (and
parsed like any output). Without the variable nothing changes; servers are never started with
it outside the test suite (tests/server/api/test_chat_templates.py).
"""

from __future__ import annotations

import json
import os

VARIABLE = "DMR_TEST_OUTPUT_GRAMMARS"


def output_grammar(model: str) -> str | None:
    path = os.environ.get(VARIABLE)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            grammars = json.load(fh)
    except (OSError, ValueError):
        return None
    grammar = grammars.get(model) if isinstance(grammars, dict) else None
    return grammar if isinstance(grammar, str) else None
