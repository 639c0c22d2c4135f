"""The `<think>` tags of the reasoning we prompt for (reasoning.py's thinking phase).

Parsing reasoning out of a model's output is its chat format's job (chat_formats/): each
family has its own tags (`<think>`, `[THINK]`, `<seed:think>`, gpt-oss's analysis channel...).
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"
