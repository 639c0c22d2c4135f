"""A streaming parser for the marker-delimited output most chat formats use.

A `Syntax` says which markers open and close reasoning, which open and close tool-call blocks
(and how a block's body turns into calls), and which markers are dropped from the text.
`MarkupParser` applies it to text as it streams in: it emits text as soon as it cannot be the
start of a marker (a partial marker is held back, as stop sequences are), and a block once it
has closed and its body parsed. A body that does not parse is given back as text.

Reasoning is recognised at the start of the answer, or from the first token when the prompt
opened it. Inside reasoning, a tool-call marker is ambiguous: models mention calls while
thinking (those stay reasoning, as the closing tag that follows shows), and some end their
thinking with a call and no closing tag (then the stream ends in the call). So from such a
marker on the reasoning is held back until either the closing tag comes (reasoning) or the
output ends (the held text is parsed as an answer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .base import Call, Item, Reasoning, Text, Toolset, merge

#: body text, tools -> the calls it holds, or None when it is not (only) calls.
BodyParser = Callable[[str, Toolset], "list[Call] | None"]


@dataclass(frozen=True)
class Block:
    start: str
    #: None: the block runs to the end of the output.
    end: str | None
    parse: BodyParser
    #: The start marker belongs to the body (e.g. Qwen3-Coder's bare `<function=`).
    keep_start: bool = False


@dataclass(frozen=True)
class Syntax:
    think: tuple[tuple[str, str], ...] = ()
    #: Reasoning blocks may also open after the answer began (Gemma 4's empty thoughts).
    think_anywhere: bool = False
    blocks: tuple[Block, ...] = ()
    drop: tuple[str, ...] = ()
    #: Parses a whole answer that is a call without markers (Llama 3's bare JSON).
    bare: BodyParser | None = None
    #: Openings that are themselves reasoning text (Apriel's "Here are my reasoning steps:").
    open_is_reasoning: tuple[str, ...] = ()

    def opened_by(self, prompt: str) -> tuple[str, str] | None:
        """The reasoning pair the prompt leaves open, if it ends inside reasoning."""
        tail = prompt.rstrip()
        for pair in self.think:
            if tail.endswith(pair[0].rstrip()):
                return pair
        return None


def find_marker(buf: str, markers: Sequence[str]) -> tuple[int, str | None]:
    """The earliest marker in buf: (index, marker), or (index, None) where a marker may be
    starting at the end of buf, or (len(buf), None). At one index the longest marker wins,
    and a longer one that may still complete there is waited for."""
    best, found = len(buf), None
    for m in markers:
        i = buf.find(m)
        if i >= 0 and (i < best or (i == best and found is not None and len(m) > len(found))):
            best, found = i, m
    for m in markers:
        for k in range(min(len(m) - 1, len(buf)), 0, -1):
            if buf.endswith(m[:k]):
                j = len(buf) - k
                if j < best or (j == best and found is not None and len(m) > len(found)):
                    best, found = j, None
                break
    return best, found


class MarkupParser:
    """See the module doc. `start` is "content", or "reasoning" when the prompt opened it
    (`close` then names the closing tag); `parse_reasoning=False` leaves reasoning tags in
    the text (llama.cpp's reasoning_format none)."""

    def __init__(self, syntax: Syntax, tools: Toolset, *, start: str = "auto",
                 close: str | None = None, parse_reasoning: bool = True,
                 opening: str | None = None):
        self.syntax = syntax
        self.tools = tools
        self.parse_reasoning = parse_reasoning and bool(syntax.think)
        self.blocks = syntax.blocks if tools else ()
        self._state = "start" if start == "auto" else start
        if self._state == "reasoning" and not self.parse_reasoning:
            self._state = "content"
        self._close = close or (syntax.think[0][1] if syntax.think else "")
        self._buf = ""
        #: Drop white space at the start of the reasoning: the prompt opened it (`opening`).
        self._think_start = opening is not None
        if opening in syntax.open_is_reasoning:
            self._buf = opening + "\n"
        self._held: str | None = None  # reasoning held since a block marker
        self._block: Block | None = None
        self._body = ""
        self._trim = False  # drop white space before the answer (after reasoning)
        self._ws = ""  # trailing white space of reasoning, emitted when more follows

    # -------------------------------------------------------------------------------- API

    @property
    def in_reasoning(self) -> bool:
        """Whether the text being generated now is reasoning (for token accounting)."""
        return self._state == "reasoning"

    def feed(self, text: str) -> list[Item]:
        self._buf += text
        out: list[Item] = []
        while self._buf and self._step(out):
            pass
        return merge(out)

    def flush(self) -> list[Item]:
        out: list[Item] = []
        while self._buf and self._step(out):
            pass
        buf, self._buf = self._buf, ""
        state = self._state
        if state == "reasoning":
            if self._held is not None:
                out += self._resolve_held(self._held + buf)
            else:
                out.append(Reasoning(buf.rstrip()))
        elif state == "block":
            out += self._close_block(self._body + buf)
        elif state == "bare":
            calls = self.syntax.bare(buf, self.tools) if self.syntax.bare else None
            out += calls if calls else [Text(buf)]
        else:
            out.append(Text(buf.lstrip() if self._trim else buf))
        return merge(out)

    # -------------------------------------------------------------------------------- states

    def _step(self, out: list[Item]) -> bool:
        """Consume what can be decided; False when more text is needed."""
        return getattr(self, "_on_" + self._state)(out)

    def _on_start(self, out: list[Item]) -> bool:
        stripped = self._buf.lstrip()
        if not stripped:
            return False
        if self.parse_reasoning:
            for opening, closing in self.syntax.think:
                if stripped.startswith(opening):
                    self._state, self._close = "reasoning", closing
                    self._think_start = True
                    self._buf = stripped if opening in self.syntax.open_is_reasoning else \
                        stripped[len(opening):]
                    return True
                if opening.startswith(stripped):
                    return False
            for _, closing in self.syntax.think:  # a bare close: an empty reasoning
                if stripped.startswith(closing):
                    self._buf = stripped[len(closing):]
                    self._state, self._trim = "content", True
                    return True
                if closing.startswith(stripped):
                    return False
        if self.syntax.bare is not None and self.tools and stripped[0] in "{[":
            self._state = "bare"
            return False
        self._state = "content"
        return True

    def _on_bare(self, out: list[Item]) -> bool:
        return False  # decided at flush: a whole-answer call, or text

    def _drops(self) -> list[str]:
        if self.parse_reasoning or not self.syntax.think:
            return list(self.syntax.drop)
        # Reasoning left as text keeps its tags: the openings and the main closing tag.
        tags = [o for o, _ in self.syntax.think] + [self.syntax.think[0][1]]
        return [d for d in self.syntax.drop if not any(t.startswith(d) for t in tags)]

    def _on_content(self, out: list[Item]) -> bool:
        markers = [b.start for b in self.blocks] + self._drops()
        if self.syntax.think_anywhere and self.parse_reasoning:
            markers += [o for o, _ in self.syntax.think]
        i, marker = find_marker(self._buf, markers)
        self._text(out, self._buf[:i])
        if marker is None:
            self._buf = self._buf[i:]
            return False
        self._buf = self._buf[i + len(marker):]
        if marker in self.syntax.drop and marker not in [b.start for b in self.blocks]:
            return True
        block = next((b for b in self.blocks if b.start == marker), None)
        if block is not None:
            self._state, self._block = "block", block
            self._body = marker if block.keep_start else ""
            return True
        self._close = next(c for o, c in self.syntax.think if o == marker)
        self._state, self._think_start = "reasoning", True
        return True

    def _text(self, out: list[Item], text: str) -> None:
        if self._trim:
            text = text.lstrip()
            if not text:
                return
            self._trim = False
        if text:
            out.append(Text(text))

    def _on_reasoning(self, out: list[Item]) -> bool:
        closes = [c for o, c in self.syntax.think if c]
        closes = list(dict.fromkeys([self._close, *closes]))
        if self._held is None:
            markers = closes + [b.start for b in self.blocks]
        else:
            markers = closes
        i, marker = find_marker(self._buf, markers)
        before, rest = self._buf[:i], self._buf[i:]
        if self._held is not None:
            self._held += before
        else:
            self._think(out, before)
        if marker is None:
            self._buf = rest
            return False
        self._buf = rest[len(marker):]
        if marker in closes:
            if self._held is not None:
                self._think(out, self._held)
                self._held = None
            self._ws = ""
            self._state, self._trim = "content", True
            return True
        self._held = marker  # a tool-call marker while thinking: wait and see
        return True

    def _think(self, out: list[Item], text: str) -> None:
        if self._think_start:
            text = text.lstrip()
            if not text:
                return
            self._think_start = False
        text = self._ws + text
        kept = text.rstrip()
        self._ws = text[len(kept):]
        if kept:
            out.append(Reasoning(kept))

    def _resolve_held(self, held: str) -> list[Item]:
        """The output ended while reasoning after a tool-call marker: calls, if it parses."""
        sub = MarkupParser(self.syntax, self.tools, start="content")
        items = sub.feed(held) + sub.flush()
        if any(isinstance(item, Call) for item in items):
            return items
        return [Reasoning(held.rstrip())]

    def _on_block(self, out: list[Item]) -> bool:
        block = self._block
        assert block is not None
        if block.end is None:
            self._body += self._buf
            self._buf = ""
            return False
        i, marker = find_marker(self._buf, [block.end])
        if marker is None:
            self._body += self._buf[:i]
            self._buf = self._buf[i:]
            return False
        body = self._body + self._buf[:i]
        self._buf = self._buf[i + len(marker):]
        out += self._close_block(body, marker)
        self._state, self._body = "content", ""
        return True

    def _close_block(self, body: str, end: str = "") -> list[Item]:
        block = self._block
        assert block is not None
        calls = block.parse(body, self.tools)
        if not calls and block.end is None and block.start in body:
            calls = self._each(block, body)  # a block to the end holds one call per start
        if calls:
            return list(calls)
        return [Text(("" if block.keep_start else block.start) + body + end)]

    def _each(self, block: Block, body: str) -> list[Call] | None:
        calls: list[Call] = []
        for i, piece in enumerate(body.split(block.start)):
            if i == 0 and block.keep_start:
                piece = piece[len(block.start):] if piece.startswith(block.start) else piece
            if not piece.strip():
                continue
            found = block.parse((block.start if block.keep_start else "") + piece, self.tools)
            if not found:
                return None
            calls += found
        return calls
