"""SSE event dicts -> GenericStreamingChunks (pure; the events are DMR's wire shapes)."""

from __future__ import annotations

from litellm.types.utils import GenericStreamingChunk

from litellm_dmr.streaming import ChunkConverter

REQUIRED = set(GenericStreamingChunk.__required_keys__)


def chat_event(delta=None, finish=None, usage=None, choices=True):
    return {"object": "chat.completion.chunk", "model": "ai/smollm2",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
            if choices else [], "usage": usage}


def test_text_then_finish_carries_usage():
    conv = ChunkConverter()
    out = []
    for event in [chat_event({"role": "assistant", "content": ""}),
                  chat_event({"content": "Hel"}), chat_event({"content": "lo"}),
                  chat_event({}, finish="length"),
                  chat_event(choices=False, usage={"prompt_tokens": 7, "completion_tokens": 2,
                                                   "total_tokens": 9})]:
        out += conv.feed(event)
    out.append(conv.finish())
    assert all(REQUIRED <= set(c) for c in out)
    assert [c["text"] for c in out] == ["Hel", "lo", ""]
    assert [c["is_finished"] for c in out] == [False, False, True]
    assert out[-1]["finish_reason"] == "length"
    assert out[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


def test_tool_call_deltas_become_tool_use():
    conv = ChunkConverter()
    first = conv.feed(chat_event({"role": "assistant", "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]}))
    rest = conv.feed(chat_event({"tool_calls": [
        {"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]}))
    conv.feed(chat_event({}, finish="tool_calls"))
    last = conv.finish()
    assert first[0]["tool_use"] == {"id": "call_1", "type": "function", "index": 0,
                                    "function": {"name": "get_weather", "arguments": ""}}
    assert rest[0]["tool_use"]["function"]["arguments"] == '{"city": "Paris"}'
    assert rest[0]["tool_use"]["id"] is None
    assert last["finish_reason"] == "tool_calls" and last["usage"] is None


def test_text_completion_events():
    conv = ChunkConverter(text_completion=True)
    out = conv.feed({"object": "text_completion",
                     "choices": [{"index": 0, "text": "Once", "finish_reason": None}]})
    out += conv.feed({"object": "text_completion",
                      "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    last = conv.finish()
    assert [c["text"] for c in out] == ["Once"]
    assert last["finish_reason"] == "stop"
    assert last["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


def test_stream_without_finish_reason_still_closes():
    conv = ChunkConverter()
    conv.feed(chat_event({"content": "x"}))
    last = conv.finish()
    assert last["is_finished"] and last["finish_reason"] == "stop"
