"""Every chat template of llama.cpp's collection, with the bundled weights, through the server.

For each template of `vendor/llama.cpp/models/templates/` (the llama-cpp-python sdist, read at
test time, tests/server/core/llama_chat_cases.py):

1. packaged as DMR packages it (`dmr package --gguf ... --chat-template ...`: a template
   layer), it is the template `dmr inspect` and /api/show report, and four conversations are
   answered: a plain chat, a system prompt with tools, a tool
   call with its result in the history, and a forced call (`tool_choice: required`, which
   must come back as a valid call in every model's own convention);
2. embedded into a copy of the GGUF instead, the same four conversations render to the same
   prompts (Anthropic's count_tokens: rendering without generating) - and not to the
   prompts of the bundled model's own template, which the layer used to lose to;
3. for one template of each chat format, a test-only grammar (server/core/test_hooks.py)
   makes the model write two tool calls in that format's native syntax; they must come back
   as structured calls in OpenAI (`tool_calls`), streamed and not; for five formats also in
   Anthropic (`tool_use`) and Ollama (`tool_calls`), streamed and not (the dialects encode
   the same core events whatever the format).

One server serves all of it; each template's model is unloaded when done. Slow by nature
(about 70 templates, most prompts hundreds of tokens): see docs/models.md for the runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import jsonschema
import ollama
import openai
import pytest
import requests

from server.cli_commands import _package
from server.client import Client
from server.core.chat_formats.detect import detect
from server.core.chat_formats.families import ChatFormat
from server.core.types import ToolCall
from server.store.bundled import bundled_gguf
from tests.conftest import ServerProcess
from tests.server.core.llama_chat_cases import sdist_dir
from tests.server.gguf_embed import embed_template

#: Choices, not free text: a forced call must end within a few tokens even where the model
#: (135M parameters) writes XML parameters, whose raw text only its closing tag ends.
WEATHER = {"name": "get_weather", "description": "Get the weather in a city",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string", "enum": ["Paris", "Rome", "Tokyo"]}},
               "required": ["city"]}}
UNIT = {"name": "set_unit", "description": "Set the temperature unit",
        "parameters": {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}},
                       "required": ["unit"]}}
TOOLS = [{"type": "function", "function": t} for t in (WEATHER, UNIT)]
SCHEMAS = {t["name"]: t["parameters"] for t in (WEATHER, UNIT)}
SYSTEM = {"role": "system", "content": "Be brief."}
ASK = {"role": "user", "content": "Weather in Paris?"}
CALLED = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'}
#: The four conversations; they share their start, so the prefix cache serves most of it.
SHAPES = {
    "plain": {"messages": [{"role": "user", "content": "Hi"}]},
    "system+tools": {"messages": [SYSTEM, ASK], "tools": TOOLS},
    "forced": {"messages": [SYSTEM, ASK], "tools": TOOLS, "tool_choice": "required",
               "max_tokens": 256},
    "tool history": {"messages": [SYSTEM, ASK, CALLED, RESULT], "tools": TOOLS},
}
NATIVE_CALLS = [ToolCall("", "get_weather", '{"city": "Paris"}'),
                ToolCall("", "set_unit", '{"unit": "c"}')]


def _templates() -> list[Path]:
    return sorted((sdist_dir() / "models" / "templates").glob("*.jinja"))


TEMPLATES = _templates()
#: One template per chat format: the native-call checks run there (OpenAI's dialect for
#: every format; Anthropic's and Ollama's encode the same core events, so a few suffice).
REPRESENTATIVE: dict[str, Path] = {}
for _path in TEMPLATES:
    REPRESENTATIVE.setdefault(detect(_path.read_text()).name, _path)
ALL_DIALECTS = {"hermes", "qwen3-coder", "harmony", "kimi-k2", "mistral"}


@pytest.fixture(scope="module")
def hooks(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hooks") / "grammars.json"
    path.write_text("{}")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, hooks) -> ServerProcess:
    base = tmp_path_factory.mktemp("templates")
    config = base / "server.yaml"
    # Each template is a new model, used once: nothing to gain from spilling its prompts.
    config.write_text("import_default_model: false\ncontext_size: 2048\nparallel: 2\n"
                      "prompt_cache_disk_mib: 0\n")
    proc = ServerProcess(base / "models", base / "server.log", "--config", str(config),
                         env={"DMR_TEST_OUTPUT_GRAMMARS": str(hooks)})
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def base_counts(server) -> dict[str, int]:
    """Prompt sizes with the bundled model's own template, for comparison."""
    client = Client(server.url, timeout=600)
    _package(client, bundled_gguf(), "test/base:latest", None, [], None, False, True)
    counts = _counts(server.url, "test/base:latest")
    _unload(server.url)
    return counts


def _tag(path: Path, variant: str) -> str:
    return "test/" + path.stem.lower().replace(".", "-")[:60] + ":" + variant


def _unload(url: str) -> None:
    requests.post(url + "/engines/unload", json={"all": True}, timeout=60)


def _anthropic_shape(shape: dict) -> dict:
    """The same conversation in Anthropic's shape (for count_tokens)."""
    system = [m["content"] for m in shape["messages"] if m["role"] == "system"]
    messages = []
    for m in shape["messages"]:
        if m["role"] == "user":
            messages.append({"role": "user", "content": m["content"]})
        elif m["role"] == "assistant":
            messages.append({"role": "assistant", "content": [
                {"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
                 "input": json.loads(c["function"]["arguments"])} for c in m["tool_calls"]]})
        elif m["role"] == "tool":
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": m["tool_call_id"],
                 "content": m["content"]}]})
    body = {"messages": messages}
    if system:
        body["system"] = system[0]
    if "tools" in shape:
        body["tools"] = [{"name": t["function"]["name"],
                          "description": t["function"]["description"],
                          "input_schema": t["function"]["parameters"]} for t in shape["tools"]]
    if shape.get("tool_choice") == "required":
        body["tool_choice"] = {"type": "any"}
    return body


def _counts(url: str, model: str) -> dict[str, int]:
    out = {}
    for name, shape in SHAPES.items():
        r = requests.post(url + "/v1/messages/count_tokens",
                          json={"model": model, **_anthropic_shape(shape)}, timeout=600)
        assert r.status_code == 200, (name, r.status_code, r.text[:500])
        out[name] = r.json()["input_tokens"]
    return out


def _native_text(fmt: ChatFormat) -> str:
    """Two calls as the model itself would write them."""
    parts = [fmt.call_text(c, SCHEMAS[c.name]) for c in NATIVE_CALLS]
    joiner = {"harmony": "<|call|><|start|>assistant", "muse": "<|eom|><|start|>assistant",
              "functionary-v3.2": ">>>"}.get(fmt.name, "\n")
    return joiner.join(parts)


def _literal_grammar(text: str) -> str:
    from server.core.chat_formats.gbnf import literal

    return f"root ::= {literal(text)}\n"


def _check_calls(calls: list[tuple[str, dict]]) -> None:
    assert [name for name, _ in calls] == ["get_weather", "set_unit"], calls
    assert calls[0][1] == {"city": "Paris"} and calls[1][1] == {"unit": "c"}


def _openai_calls(oa: openai.OpenAI, model: str, stream: bool) -> list[tuple[str, dict]]:
    kw = {"model": model, "messages": [SYSTEM, ASK], "tools": TOOLS, "max_tokens": 1024,
          "temperature": 0}
    if not stream:
        choice = oa.chat.completions.create(**kw).choices[0]
        assert choice.finish_reason == "tool_calls"
        return [(c.function.name, json.loads(c.function.arguments))
                for c in choice.message.tool_calls]
    calls: dict[int, list] = {}
    finish = None
    for chunk in oa.chat.completions.create(stream=True, **kw):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        finish = chunk.choices[0].finish_reason or finish
        for tc in delta.tool_calls or []:
            entry = calls.setdefault(tc.index, ["", ""])
            entry[0] += tc.function.name or ""
            entry[1] += tc.function.arguments or ""
    assert finish == "tool_calls"
    return [(name, json.loads(args)) for name, args in (calls[i] for i in sorted(calls))]


def _anthropic_calls(an: anthropic.Anthropic, model: str,
                     stream: bool) -> list[tuple[str, dict]]:
    kw = {"model": model, "max_tokens": 1024, "system": SYSTEM["content"],
          "messages": [ASK], "tools": _anthropic_shape({"messages": [], "tools": TOOLS})["tools"]}
    if not stream:
        message = an.messages.create(**kw)
    else:
        with an.messages.stream(**kw) as events:
            message = events.get_final_message()
    assert message.stop_reason == "tool_use"
    return [(b.name, b.input) for b in message.content if b.type == "tool_use"]


def _ollama_calls(ol: ollama.Client, model: str, stream: bool) -> list[tuple[str, dict]]:
    kw = {"model": model, "messages": [SYSTEM, ASK], "tools": TOOLS,
          "options": {"num_predict": 1024, "temperature": 0}}
    if not stream:
        calls = ol.chat(**kw).message.tool_calls or []
    else:
        calls = [c for part in ol.chat(stream=True, **kw) for c in part.message.tool_calls or []]
    return [(c.function.name, dict(c.function.arguments)) for c in calls]


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.stem for p in TEMPLATES])
def test_template(path: Path, server, hooks, base_counts, tmp_path):
    source = path.read_text()
    fmt = detect(source)
    client = Client(server.url, timeout=600)
    layer = _tag(path, "layer")
    _package(client, bundled_gguf(), layer, None, [], str(path), False, True)
    # the layer's template is the one reported (dmr inspect, /api/show)
    assert requests.get(f"{server.url}/models/{layer}").json()["chat_format"]["name"] == fmt.name
    show = requests.post(f"{server.url}/api/show", json={"model": layer}, timeout=60).json()
    assert show["template"] == source
    oa = openai.OpenAI(base_url=server.url + "/engines/v1", api_key="-", max_retries=0,
                       timeout=600)

    # 1. the four conversations, answered (small max_tokens; the forced call completes)
    for name, shape in SHAPES.items():
        kw = {"max_tokens": 2, "temperature": 0, **shape}
        try:
            reply = oa.chat.completions.create(model=layer, **kw)
        except openai.APIStatusError as exc:
            pytest.fail(f"{name}: {exc.status_code} {exc.message}")
        choice = reply.choices[0]
        if name == "forced":
            assert choice.finish_reason == "tool_calls", (name, choice)
            [call] = choice.message.tool_calls
            jsonschema.validate(json.loads(call.function.arguments),
                                SCHEMAS[call.function.name])

    # 3. native calls through the three dialects (one template per format)
    if REPRESENTATIVE[fmt.name] == path:
        hooks.write_text(json.dumps({layer: _literal_grammar(_native_text(fmt))}))
        an = anthropic.Anthropic(base_url=server.url, api_key="-", max_retries=0, timeout=600)
        ol = ollama.Client(host=server.url, timeout=600)
        for stream in (False, True):
            _check_calls(_openai_calls(oa, layer, stream))
            if fmt.name in ALL_DIALECTS:
                _check_calls(_anthropic_calls(an, layer, stream))
                _check_calls(_ollama_calls(ol, layer, stream))
        hooks.write_text("{}")

    # 2. the template embedded in the GGUF renders the same prompts as the layer
    layer_counts = _counts(server.url, layer)
    _unload(server.url)
    client.remove(layer, force=True)
    embedded = _tag(path, "embedded")
    copy = tmp_path / "model.gguf"
    embed_template(bundled_gguf(), copy, source)
    _package(client, copy, embedded, None, [], None, False, True)
    copy.unlink()
    try:
        assert _counts(server.url, embedded) == layer_counts
    finally:
        _unload(server.url)
        client.remove(embedded, force=True)
    assert layer_counts != base_counts, "the template layer must win over the GGUF's"
