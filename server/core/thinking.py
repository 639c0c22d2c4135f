"""Split `<think>...</think>` reasoning out of a model's streamed output."""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


class ThinkSplitter:
    """Feed text, get (thinking, content) pieces. Reasoning is recognised only at the start of
    the answer (after optional white space), or from the first token when the prompt already
    opened a `<think>` block."""

    def __init__(self, started: bool = False):
        self._state = "thinking" if started else "start"
        self._held = ""

    @property
    def in_thinking(self) -> bool:
        """Inside a thinking block (what is fed now is reasoning)."""
        return self._state == "thinking"

    def feed(self, text: str) -> tuple[str, str]:
        buf = self._held + text
        self._held = ""
        thinking = content = ""
        while buf:
            if self._state == "start":
                stripped = buf.lstrip()
                if stripped.startswith(OPEN):
                    self._state = "thinking"
                    buf = stripped[len(OPEN):].lstrip("\n")
                elif OPEN.startswith(stripped):
                    self._held = buf
                    return thinking, content
                else:
                    self._state = "content"
            elif self._state == "thinking":
                i = buf.find(CLOSE)
                if i >= 0:
                    thinking += buf[:i]
                    buf = buf[i + len(CLOSE):].lstrip("\n")
                    self._state = "content"
                    continue
                keep = _partial_suffix(buf, CLOSE)
                thinking += buf[: len(buf) - keep]
                self._held = buf[len(buf) - keep:]
                return thinking, content
            else:
                content += buf
                buf = ""
        return thinking, content

    def flush(self) -> tuple[str, str]:
        held, self._held = self._held, ""
        return (held, "") if self._state == "thinking" else ("", held)
