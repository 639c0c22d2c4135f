"""The recorder's parts on their own (no server): stream splitting at any byte, media
truncation, secret scrubbing, the rings' bounds and the followers' queues."""

from __future__ import annotations

import base64
import json
import os

from server.api import recorder as rec
from server.api.rebuild import OllamaRebuilder, OpenAIRebuilder, StreamReader


def _sse(*chunks: dict) -> bytes:
    return "".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks).encode() \
        + b"data: [DONE]\n\n"


CHAT = _sse(
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"reasoning_content": "hmm "}}]},
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"content": "héllo ✓"}}]},
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"tool_calls": [
         {"index": 0, "id": "call_1", "type": "function",
          "function": {"name": "f", "arguments": "{\"a\""}}]}}]},
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"tool_calls": [
         {"index": 0, "function": {"arguments": ": 1}"}}]}, "finish_reason": "tool_calls"}]},
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
     "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
)


def _rebuild(data: bytes, step: int) -> dict:
    builder = OpenAIRebuilder()
    reader = StreamReader(builder, sse=True)
    for i in range(0, len(data), step):
        reader.feed(data[i:i + step])
    reader.close()
    return builder.answer()


def test_any_split_of_the_stream_rebuilds_the_same_answer():
    whole = _rebuild(CHAT, len(CHAT))
    message = whole["choices"][0]["message"]
    assert whole["object"] == "chat.completion" and whole["usage"]["total_tokens"] == 7
    assert message["content"] == "héllo ✓" and message["reasoning_content"] == "hmm "
    assert message["tool_calls"] == [{"id": "call_1", "type": "function",
                                      "function": {"name": "f", "arguments": "{\"a\": 1}"}}]
    assert whole["choices"][0]["finish_reason"] == "tool_calls"
    for step in (1, 2, 3, 7, 64):  # cuts inside lines and inside UTF-8 characters
        assert _rebuild(CHAT, step) == whole


def test_in_band_errors_and_ndjson():
    builder = OpenAIRebuilder()
    StreamReader(builder, sse=True).feed(b'data: {"error": {"message": "boom"}}\n\n')
    assert builder.error == {"error": {"message": "boom"}}
    builder = OllamaRebuilder()
    reader = StreamReader(builder, sse=False)
    reader.feed(b'{"model":"m","message":{"role":"assistant","content":"a","thinking":"t"},'
                b'"done":false}\n{"model":"m","message":{"role":"assistant","content":"b"},')
    reader.feed(b'"done":true,"eval_count":2}')
    reader.close()
    answer = builder.answer()
    assert answer["message"] == {"role": "assistant", "content": "ab", "thinking": "t"}
    assert answer["done"] is True and answer["eval_count"] == 2


def test_media_truncated_text_kept_secrets_redacted():
    image = base64.b64encode(os.urandom(3000)).decode()
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "look at this picture, sk-secret-123456"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{image}"}}]}],
        "images": [image], "short": image[:50]}
    text = rec.body_text(body, ["sk-secret-123456"])
    data = json.loads(text)
    part = data["messages"][0]["content"]
    assert part[0]["text"] == "look at this picture, [redacted]"
    assert part[1]["image_url"]["url"] == (f"data:image/jpeg;base64,{image[:100]}...[truncated "
                                           f"{len(image) - 100} chars]")
    assert data["images"][0].endswith(f"...[truncated {len(image) - 100} chars]")
    assert data["short"] == image[:50]
    assert rec.body_text(b"not json " + b"x" * 10, []) == "not json xxxxxxxxxx"
    huge = rec.body_text("y " * rec.MAX_TEXT, [])
    assert len(huge) < rec.MAX_TEXT + 50 and huge.endswith(f"[truncated {rec.MAX_TEXT} chars]")


def test_rings_are_bounded_per_model_and_in_number():
    r = rec.Recorder(size=3)
    for i in range(5):
        r.add("sha256:a", {"id": i})
    assert [x["id"] for _, ring in r.rings("sha256:a") for x in ring] == [2, 3, 4]
    for i in range(rec.MAX_MODELS + 5):
        r.add(f"sha256:{i}", {"id": i})
    kept = [mid for mid, _ in r.rings()]
    assert len(kept) == rec.MAX_MODELS and "sha256:a" not in kept and "sha256:0" not in kept


def test_a_stalled_follower_misses_events_but_blocks_nothing():
    r = rec.Recorder(size=2)
    sub = r.subscribe()
    for i in range(rec.SUBSCRIBER_BUFFER + 10):
        r.add("sha256:a", {"id": i})
    assert sub.qsize() == rec.SUBSCRIBER_BUFFER
    r.unsubscribe(sub)
    r.add("sha256:a", {"id": "after"})
    assert sub.qsize() == rec.SUBSCRIBER_BUFFER
