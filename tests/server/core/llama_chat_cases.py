"""llama.cpp's own chat-format test cases, read from the llama-cpp-python sdist at test time.

`vendor/llama.cpp/tests/test-chat.cpp` holds, per chat template, model outputs and the message
each must parse into (`tst.test(output).tools(...).expect(...).run();`). Nothing of it is copied
here: `sdist_dir()` downloads the sdist of the installed llama-cpp-python with pip (PyPI, or
pip's cache) and extracts the templates and that file, and `load_cases()` reads the C++ test
source with a small tokenizer and evaluator that knows only the builder calls, helper
functions and constants the test file uses. Statements it does not understand are skipped and
counted, so a new upstream construct shows up as missing cases rather than as wrong ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .cpp_source import Evaluator, Msg, Tok, Unsupported, tokenize, tool_from_items

#: Where the extracted material is kept between test sessions.
CACHE = Path(os.environ.get("DMR_LLAMA_CPP_SDIST_CACHE",
                            Path.home() / ".cache" / "litellm-dmr" / "llama-cpp-sdist"))
WANTED = ("vendor/llama.cpp/models/templates/", "vendor/llama.cpp/tests/test-chat.cpp")


def sdist_version() -> str:
    return metadata.version("llama_cpp_python")


def sdist_dir() -> Path:
    """The extracted `vendor/llama.cpp` of the installed llama-cpp-python's sdist.

    DMR_LLAMA_CPP_SDIST may name an already downloaded .tar.gz (or an extracted llama.cpp
    directory) to skip the download."""
    given = os.environ.get("DMR_LLAMA_CPP_SDIST")
    if given and Path(given).is_dir():
        return Path(given)
    version = sdist_version()
    root = CACHE / version
    done = root / "llama.cpp" / ".complete"
    if done.exists():
        return done.parent
    archive = Path(given) if given else _download(version, CACHE / "downloads")
    out = root / "llama.cpp"
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/", 1)
            if len(parts) < 2 or not member.isfile() or not parts[1].startswith(WANTED):
                continue
            target = out / parts[1][len("vendor/llama.cpp/"):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    done.write_text(version)
    return out


def _download(version: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    name = f"llama_cpp_python-{version}.tar.gz"
    if not (dest / name).exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", f"llama-cpp-python=={version}", "-d", str(dest), "-q"],
                       check=True)
    return dest / name


# ---------------------------------------------------------------------------- cases


@dataclass
class Case:
    template: str
    line: int
    input: str
    tools: list[dict[str, Any]] = field(default_factory=list)
    messages: list[Msg] = field(default_factory=list)
    enable_thinking: bool = True
    reasoning_format: str = "NONE"
    tool_choice: str = "AUTO"
    parallel_tool_calls: bool = False
    add_generation_prompt: bool = True
    continuation: str = "NONE"
    json_schema: str = ""
    is_partial: bool = False
    expect: Msg = field(default_factory=lambda: Msg("assistant"))

    @property
    def id(self) -> str:
        return f"{Path(self.template).stem}:{self.line}"


def _enum(value: str, prefix: str) -> str:
    return value.split("::")[-1].replace(prefix, "")


def _apply(case: Case, method: str, args: list) -> None:
    arg = args[0] if args else None
    if method == "tools":
        case.tools = [t if isinstance(t, dict) else tool_from_items(t) for t in arg]
    elif method == "messages":
        case.messages = arg
    elif method == "enable_thinking":
        case.enable_thinking = bool(arg)
    elif method == "reasoning_format":
        case.reasoning_format = _enum(arg, "COMMON_REASONING_FORMAT_")
    elif method == "tool_choice":
        case.tool_choice = _enum(arg, "COMMON_CHAT_TOOL_CHOICE_")
    elif method == "parallel_tool_calls":
        case.parallel_tool_calls = bool(arg)
    elif method == "add_generation_prompt":
        case.add_generation_prompt = bool(arg)
    elif method == "continue_final_message":
        case.continuation = _enum(arg, "COMMON_CHAT_CONTINUATION_")
    elif method == "json_schema":
        case.json_schema = arg
    elif method == "is_partial":
        case.is_partial = bool(arg)
    elif method == "expect":
        case.expect = arg
    elif method == "expect_content":
        case.expect.content = arg
    elif method == "expect_reasoning":
        case.expect.reasoning = arg
    elif method == "expect_tool_calls":
        case.expect.tool_calls = [{"name": c[0], "arguments": c[1],
                                   "id": c[2] if len(c) > 2 and isinstance(c[2], str) else ""}
                                  for c in arg]
    elif method in ("expect_reconstruction", "run"):
        pass
    else:
        raise Unsupported(method)


@dataclass
class Extraction:
    cases: list[Case]
    skipped: list[tuple[int, str]]  # (line, why) of test statements that were not understood


def _function_body(toks: list[Tok], name: str) -> tuple[int, int]:
    for i, t in enumerate(toks):
        if t.kind == "id" and t.value == name and toks[i + 1].value == "(" \
                and toks[i - 1].value == "void":
            j = i
            while toks[j].value != "{":
                j += 1
            depth, k = 0, j
            while True:
                if toks[k].value == "{":
                    depth += 1
                elif toks[k].value == "}":
                    depth -= 1
                    if depth == 0:
                        return j + 1, k
                k += 1
    raise ValueError(f"function {name} not found")


def _globals(ev: Evaluator, toks: list[Tok], end: int) -> None:
    """Tools (`static common_chat_tool x{...};`) and messages defined before the tests."""
    i = 0
    while i < end:
        t = toks[i]
        if t.kind == "id" and t.value in ("common_chat_tool", "common_chat_msg") \
                and toks[i + 1].kind == "id" and toks[i + 2].value in ("{", "="):
            name = toks[i + 1].value
            try:
                if toks[i + 2].value == "{":
                    items, j = ev.items(i + 3, "}")
                    value = tool_from_items(items) if t.value == "common_chat_tool" else \
                        Msg(items[0], items[1], items[4], [], items[5], items[6])
                else:
                    value, j = ev.expr(i + 3)
                ev.vars[name] = value
                i = j
                continue
            except (Unsupported, IndexError, ValueError):
                pass
        i += 1


class _Runner:
    def __init__(self, ev: Evaluator, toks: list[Tok]):
        self.ev, self.toks = ev, toks
        self.testers: dict[str, str] = {}
        self.cases: list[Case] = []
        self.skipped: list[tuple[int, str]] = []

    def block(self, start: int, end: int) -> None:
        i = start
        while i < end:
            i = self.statement(i, end)

    def _statement_end(self, i: int) -> int:
        depth = 0
        while True:
            v = self.toks[i].value if self.toks[i].kind == "op" else None
            if v in ("(", "{", "["):
                depth += 1
            elif v in (")", "}", "]"):
                depth -= 1
            elif v == ";" and depth == 0:
                return i + 1
            i += 1

    def _matching(self, i: int) -> int:
        open_, close = self.toks[i].value, {"{": "}", "(": ")"}[self.toks[i].value]
        depth = 0
        while True:
            if self.toks[i].kind == "op" and self.toks[i].value == open_:
                depth += 1
            elif self.toks[i].kind == "op" and self.toks[i].value == close:
                depth -= 1
                if depth == 0:
                    return i
            i += 1

    def statement(self, i: int, end: int) -> int:
        toks = self.toks
        t = toks[i]
        if t.kind == "op" and t.value == "{":
            close = self._matching(i)
            self.block(i + 1, close)
            return close + 1
        if t.kind == "id" and t.value == "for":
            return self._for(i)
        if t.kind == "id" and t.value == "if":
            close = self._matching(i + 1)
            body = close + 1
            return self._matching(body) + 1 if toks[body].value == "{" else \
                self._statement_end(body)
        stop = self._statement_end(i)
        try:
            self._simple(i, stop)
        except (Unsupported, IndexError, KeyError, TypeError, ValueError) as exc:
            if any(x.kind == "id" and x.value == "test" for x in toks[i:stop]):
                self.skipped.append((t.line, f"{type(exc).__name__}: {exc}"))
        return stop

    def _for(self, i: int) -> int:
        toks = self.toks
        paren = i + 1
        close = self._matching(paren)
        colon = next(k for k in range(paren, close) if toks[k].value == ":")
        var = toks[colon - 1].value
        values, _ = self.ev.items(colon + 2, "}")
        body = close + 1
        body_end = self._matching(body)
        for value in values:
            self.ev.vars[var] = value
            self.block(body + 1, body_end)
        return body_end + 1

    def _simple(self, i: int, stop: int) -> None:
        toks, ev = self.toks, self.ev
        words = [x.value for x in toks[i:stop]]
        if "peg_tester" in words:  # auto tst = peg_tester("path", ...);
            k = i + words.index("peg_tester")
            name = toks[k - 2].value
            path, _ = ev.expr(k + 2)
            self.testers[name] = path
            return
        if toks[i].value == "test_lfm2_parser":
            path, _ = ev.expr(i + 2)
            start, body_end = _function_body(toks, "test_lfm2_parser")
            self.ev.vars["template_path"] = path
            self.block(start, body_end)
            return
        if toks[i].kind == "id" and toks[i].value in self.testers and words[1:3] == [".", "test"]:
            self._test(i, stop)
            return
        # declarations: [static|const|auto] type name = expr; | type name{...}; | type name;
        k = i
        while toks[k].value in ("static", "const", "auto", "char", "*", "std::string", "common_chat_msg",
                                "common_chat_tool", "&"):
            k += 1
        if k > i and toks[k].kind == "id":
            name = toks[k].value
            kind = toks[k - 1].value
            nxt = toks[k + 1].value
            if nxt == "=":
                ev.vars[name], _ = ev.expr(k + 2)
            elif nxt == "{" and kind == "common_chat_tool":
                items, _ = ev.items(k + 2, "}")
                ev.vars[name] = tool_from_items(items)
            elif nxt == ";" and kind == "common_chat_msg":
                ev.vars[name] = Msg()
            return
        # name.field = expr;
        if toks[i].kind == "id" and toks[i + 1].value == "." and toks[i + 3].value == "=":
            target = ev.vars.get(toks[i].value)
            if isinstance(target, Msg):
                value, _ = ev.expr(i + 4)
                attr = {"reasoning_content": "reasoning"}.get(toks[i + 2].value,
                                                              toks[i + 2].value)
                setattr(target, attr, value)

    def _test(self, i: int, stop: int) -> None:
        toks, ev = self.toks, self.ev
        template = self.testers[toks[i].value]
        value, k = ev.expr(i + 4)
        case = Case(template=template, line=toks[i].line, input=value)
        k += 1  # ')'
        while k < stop - 1:
            assert toks[k].value == ".", toks[k].value
            method = toks[k + 1].value
            args, k = ev.items(k + 3, ")")
            if method == "expect" and isinstance(args[0], Msg):
                args = [args[0].copy()]
            _apply(case, method, args)
        self.cases.append(case)


def load_cases(root: Path) -> Extraction:
    source = (root / "tests" / "test-chat.cpp").read_text()
    toks = tokenize(source)
    ev = Evaluator(toks)
    start, end = _function_body(toks, "test_template_output_peg_parsers")
    _globals(ev, toks, start)
    ev.vars["message_user"] = Msg("user", "Hey there!")
    runner = _Runner(ev, toks)
    runner.block(start, end)
    return Extraction(runner.cases, runner.skipped)
