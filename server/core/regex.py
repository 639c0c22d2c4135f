"""Regular expressions as structured output needs them: parsed once, then either rendered as a
grammar (by an engine) or used to finish a string the model started.

Only the subset a grammar can express is accepted: literals and escapes (`\\d \\w \\s \\.`,
`\\uXXXX`, ...), `.`, character classes (ranges, negation), groups `( )` and `(?: )`,
alternation, and the quantifiers `* + ? {m} {m,} {m,n}`, anchored at both ends. Patterns apply
to the decoded string, so characters are plain code points here; writing them as JSON (escaping
`"`, `\\` and control characters) is the renderer's job.

`shortest_completion(node, prefix)` answers "what is the shortest text that makes
`prefix + text` match?" by a breadth-first search over the states of a Thompson automaton,
which is how the core closes a string cut off by the token budget.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MAX_CODE_POINT = 0x10FFFF
#: Repetitions beyond this are written as "at least this many, then any number": a bound of
#: thousands would make an automaton (and a grammar) of thousands of states.
MAX_REPEAT = 256


class RegexError(ValueError):
    """The pattern is malformed or uses syntax no grammar can express."""


# ------------------------------------------------------------------------------ the tree


@dataclass(frozen=True)
class Chars:
    """A set of code points as sorted, disjoint, inclusive ranges."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, c: int) -> bool:
        return any(lo <= c <= hi for lo, hi in self.ranges)

    def sample(self) -> int | None:
        """A readable member: a letter, digit or space when there is one, else the first."""
        for preferred in (ord("a"), ord("0"), ord("A"), ord(" "), ord("-"), ord("_")):
            if preferred in self:
                return preferred
        for lo, _ in self.ranges:
            if lo >= 0x20:
                return lo
        return self.ranges[0][0] if self.ranges else None


@dataclass(frozen=True)
class Seq:
    items: tuple


@dataclass(frozen=True)
class Alt:
    options: tuple


@dataclass(frozen=True)
class Repeat:
    node: object
    min: int
    max: int | None  # None = unbounded


Node = Chars | Seq | Alt | Repeat


def _normalize(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def char_set(ranges: list[tuple[int, int]], negated: bool = False) -> Chars:
    norm = _normalize(ranges)
    if not negated:
        return Chars(norm)
    out, start = [], 0
    for lo, hi in norm:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= MAX_CODE_POINT:
        out.append((start, MAX_CODE_POINT))
    return Chars(tuple(out))


def literal(text: str) -> Node:
    return Seq(tuple(Chars(((ord(c), ord(c)),)) for c in text))


_DIGIT = [(0x30, 0x39)]
_WORD = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE = [(0x09, 0x0D), (0x20, 0x20)]
_CLASS_ESCAPES = {"d": (_DIGIT, False), "D": (_DIGIT, True), "w": (_WORD, False),
                  "W": (_WORD, True), "s": (_SPACE, False), "S": (_SPACE, True)}
_CHAR_ESCAPES = {"t": 9, "n": 10, "r": 13, "f": 12, "v": 11, "0": 0}
#: `.`: anything but line breaks, as in JavaScript and Python without DOTALL.
DOT = char_set([(0x0A, 0x0A), (0x0D, 0x0D)], negated=True)


# ------------------------------------------------------------------------------ parsing


class _Parser:
    def __init__(self, pattern: str):
        self.p = pattern
        self.i = 0

    def error(self, what: str) -> RegexError:
        return RegexError(f"{what} at position {self.i} of /{self.p}/")

    def peek(self) -> str | None:
        return self.p[self.i] if self.i < len(self.p) else None

    def take(self) -> str:
        c = self.peek()
        if c is None:
            raise self.error("unexpected end")
        self.i += 1
        return c

    def alternation(self) -> Node:
        options = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            options.append(self.sequence())
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def sequence(self) -> Node:
        items = []
        while self.peek() not in (None, "|", ")"):
            atom = self.atom()
            items.append(self.quantified(atom))
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def quantified(self, atom: Node) -> Node:
        while True:
            c = self.peek()
            if c == "*":
                lo, hi = 0, None
            elif c == "+":
                lo, hi = 1, None
            elif c == "?":
                lo, hi = 0, 1
            elif c == "{" and self._is_quantifier():
                lo, hi = self._braces()
            else:
                return atom
            if c != "{":
                self.i += 1
            if self.peek() in ("?", "+"):
                raise self.error("lazy or possessive quantifiers are not supported")
            if hi is not None and hi < lo:
                raise self.error("quantifier maximum is below its minimum")
            atom = Repeat(atom, min(lo, MAX_REPEAT), hi if hi is None or hi <= MAX_REPEAT
                          else None)

    def _is_quantifier(self) -> bool:
        end = self.p.find("}", self.i)
        body = self.p[self.i + 1:end] if end > 0 else ""
        return bool(body) and all(part.strip().isdigit() or part.strip() == ""
                                  for part in body.split(",", 1)) and body.strip(", ") != ""

    def _braces(self) -> tuple[int, int | None]:
        end = self.p.index("}", self.i)
        body = self.p[self.i + 1:end]
        self.i = end + 1
        if "," not in body:
            n = int(body)
            return n, n
        lo, hi = body.split(",", 1)
        return int(lo or 0), (int(hi) if hi.strip() else None)

    def atom(self) -> Node:
        c = self.take()
        if c == "(":
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.peek() == "?":
                raise self.error("only (?: ) groups are supported")
            node = self.alternation()
            if self.take() != ")":
                raise self.error("missing )")
            return node
        if c == "[":
            return self.char_class()
        if c == ".":
            return DOT
        if c == "\\":
            return self.escape(in_class=False)
        if c in "^$":
            raise self.error(f"'{c}' is only supported at the start/end of the pattern")
        if c in "*+?":
            raise self.error("nothing to repeat")
        if c == ")":
            raise self.error("unbalanced )")
        return Chars(((ord(c), ord(c)),))

    def escape(self, in_class: bool) -> Chars:
        c = self.take()
        if c in _CLASS_ESCAPES:
            ranges, negated = _CLASS_ESCAPES[c]
            return char_set(ranges, negated)
        if c in _CHAR_ESCAPES:
            code = _CHAR_ESCAPES[c]
        elif c in "ux":
            digits = 4 if c == "u" else 2
            text = self.p[self.i:self.i + digits]
            if len(text) != digits or any(h not in "0123456789abcdefABCDEF" for h in text):
                raise self.error(f"bad \\{c} escape")
            self.i += digits
            code = int(text, 16)
        elif c.isalnum():
            raise self.error(f"the escape \\{c} is not supported")
        else:
            code = ord(c)
        return Chars(((code, code),))

    def char_class(self) -> Chars:
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            c = self.take()
            if c == "]" and not first:
                break
            first = False
            if c == "\\":
                part = self.escape(in_class=True)
                if len(part.ranges) != 1 or part.ranges[0][0] != part.ranges[0][1]:
                    ranges.extend(part.ranges)
                    continue
                lo = part.ranges[0][0]
            else:
                lo = ord(c)
            if self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.i += 1
                c = self.take()
                hi = self.escape(in_class=True).ranges[0][0] if c == "\\" else ord(c)
                if hi < lo:
                    raise self.error("character range out of order")
                ranges.append((lo, hi))
            else:
                ranges.append((lo, lo))
        return char_set(ranges, negated)


def anchored_at_end(pattern: str) -> bool:
    """Ends with a `$` that is not escaped (an even run of backslashes before it)."""
    if not pattern.endswith("$"):
        return False
    run = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
    return run % 2 == 0


def parse(pattern: str) -> Node:
    """The tree of an anchored pattern (`^...$`; the anchors are optional here)."""
    body = pattern[1:] if pattern.startswith("^") else pattern
    if anchored_at_end(body):
        body = body[:-1]
    parser = _Parser(body)
    node = parser.alternation()
    if parser.i != len(body):
        raise parser.error("unbalanced )")
    return node


# ------------------------------------------------------------------------------ automaton


@dataclass
class _Nfa:
    """States are ints; `edges[s]` lists (Chars, target); `eps[s]` the empty moves."""

    edges: list[list[tuple[Chars, int]]] = field(default_factory=list)
    eps: list[list[int]] = field(default_factory=list)

    def state(self) -> int:
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def build(self, node: Node, start: int) -> int:
        """Wire `node` from `start`; returns its end state."""
        if isinstance(node, Chars):
            end = self.state()
            self.edges[start].append((node, end))
            return end
        if isinstance(node, Seq):
            for item in node.items:
                start = self.build(item, start)
            return start
        if isinstance(node, Alt):
            end = self.state()
            for option in node.options:
                s = self.state()
                self.eps[start].append(s)
                self.eps[self.build(option, s)].append(end)
            return end
        for _ in range(node.min):  # Repeat
            start = self.build(node.node, start)
        if node.max is None:
            loop = self.state()
            self.eps[start].append(loop)
            self.eps[self.build(node.node, loop)].append(loop)
            return loop
        end = self.state()
        self.eps[start].append(end)
        for _ in range(node.max - node.min):
            start = self.build(node.node, start)
            self.eps[start].append(end)
        return end

    def closure(self, states) -> frozenset[int]:
        seen = set(states)
        stack = list(states)
        while stack:
            for t in self.eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)

    def step(self, states: frozenset[int], c: int) -> frozenset[int]:
        return self.closure([t for s in states for chars, t in self.edges[s] if c in chars])


class Matcher:
    """An automaton for one pattern: does a text match, can it still, how to finish it."""

    def __init__(self, node: Node):
        self._nfa = _Nfa()
        start = self._nfa.state()
        self._end = self._nfa.build(node, start)
        self._start = self._nfa.closure([start])

    def states(self, text: str) -> frozenset[int]:
        states = self._start
        for ch in text:
            states = self._nfa.step(states, ord(ch))
            if not states:
                break
        return states

    def matches(self, text: str) -> bool:
        return self._end in self.states(text)

    def viable(self, text: str) -> bool:
        """Some continuation of `text` matches."""
        return bool(self.states(text))

    def completion(self, prefix: str, limit: int = 4096) -> str | None:
        """The shortest text t with prefix + t matching, or None when there is none."""
        start = self.states(prefix)
        if not start:
            return None
        if self._end in start:
            return ""
        queue = deque([(start, "")])
        seen = {start}
        while queue:
            states, text = queue.popleft()
            if len(text) >= limit:
                break
            for c in self._choices(states):
                nxt = self._nfa.step(states, c)
                if not nxt or nxt in seen:
                    continue
                if self._end in nxt:
                    return text + chr(c)
                seen.add(nxt)
                queue.append((nxt, text + chr(c)))
        return None

    def _choices(self, states: frozenset[int]) -> list[int]:
        """One sample character per outgoing class: enough for a shortest path."""
        out: list[int] = []
        for s in sorted(states):
            for chars, _ in self._nfa.edges[s]:
                c = chars.sample()
                if c is not None and c not in out:
                    out.append(c)
        return out


def matcher(pattern: str) -> Matcher:
    return Matcher(parse(pattern))
