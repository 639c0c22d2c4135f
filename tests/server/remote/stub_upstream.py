"""A tiny OpenAI-compatible upstream that fails on demand, for the remote engine's unit tests.

Only the pool logic is tested against it (which replica, retries, cooldowns, in-band errors);
everything a model does is tested against real servers (test_remote_e2e.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

MODEL = "Org/Stub-Model"


class StubUpstream:
    """`mode`: "ok", "500", "502", "503", "404", "400", "slow" (sleeps `delay` before
    answering), "break" (a stream that dies after two chunks), "hang_stream" (headers, then
    silence), "tool" (a stream with thinking and a tool call)."""

    def __init__(self, name: str = "stub"):
        self.name = name
        self.mode = "ok"
        self.delay = 0.0
        self.requests: list[dict] = []
        self.health_checks = 0
        self.models = [MODEL]
        self.require_key: str | None = None
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ the app

    def _app(self, environ, start_response):
        request = Request(environ)
        return self._respond(request)(environ, start_response)

    def _respond(self, request: Request) -> Response:
        if self.require_key and request.headers.get("Authorization") != f"Bearer {self.require_key}":
            return self._json({"error": {"message": "bad key", "type": "auth"}}, 401)
        if request.path == "/v1/models":
            self.health_checks += 1
            return self._json({"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": self.name} for m in self.models]})
        body = request.get_json(silent=True) or {}
        self.requests.append({"path": request.path, "body": body, "method": request.method,
                              "query": request.query_string.decode(),
                              "headers": dict(request.headers)})
        mode = self.mode
        if mode == "slow":
            time.sleep(self.delay)
        if mode in ("500", "502", "503", "404", "400"):
            status = int(mode)
            headers = {"Retry-After": "2"} if status == 503 else {}
            return self._json({"error": {"message": f"stub says {status}", "type": "x",
                                         "code": status}}, status, headers)
        if request.path.endswith("/embeddings"):
            return self._json({"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": [3.0, 4.0]}],
                "usage": {"prompt_tokens": 2, "total_tokens": 2}})
        if body.get("stream"):
            return Response(self._stream(body, mode), mimetype="text/event-stream")
        if mode == "tool":
            return self._json({"id": "c1", "object": "chat.completion", "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "tool_calls",
                                            "message": {
                                                "role": "assistant", "content": None,
                                                "reasoning_content": "The user wants weather.",
                                                "tool_calls": [{
                                                    "id": "call_9", "type": "function",
                                                    "function": {"name": "get_weather",
                                                                 "arguments": '{"city": "Paris"}'}}]}}],
                               "usage": {"prompt_tokens": 9, "completion_tokens": 7,
                                         "total_tokens": 16}})
        return self._json({"id": "c1", "object": "chat.completion", "model": body.get("model"),
                           "choices": [{"index": 0, "finish_reason": "stop", "message": {
                               "role": "assistant", "content": f"hello from {self.name}"}}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 3,
                                     "total_tokens": 8}})

    def _stream(self, body: dict, mode: str) -> Iterator[bytes]:
        def event(delta: dict, finish=None, usage=None) -> bytes:
            data = {"id": "c1", "object": "chat.completion.chunk", "model": body.get("model"),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage:
                data = {**data, "choices": [], "usage": usage}
            return f"data: {json.dumps(data)}\n\n".encode()

        if mode == "hang_stream":
            yield b": waiting\n\n"
            time.sleep(30)
        if mode == "tool":  # thinking, then a tool call in two pieces, as vLLM streams them
            yield event({"role": "assistant", "reasoning_content": "The user wants weather."})
            yield event({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                         "function": {"name": "get_weather", "arguments": ""}}]})
            yield event({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]})
            yield event({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]})
            yield event({}, "tool_calls")
            yield event({}, usage={"prompt_tokens": 9, "completion_tokens": 7,
                                   "total_tokens": 16})
            yield b"data: [DONE]\n\n"
            return
        yield event({"role": "assistant", "content": ""})
        yield event({"content": f"hello from {self.name}"})
        if mode == "break":
            yield b'data: {"id": "c1", "obj'  # half an event, then the connection drops
            raise ConnectionAbortedError("stub dies mid-stream")
        yield event({}, "stop")
        yield event({}, usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
        yield b"data: [DONE]\n\n"

    @staticmethod
    def _json(obj, status: int = 200, headers: dict | None = None) -> Response:
        return Response(json.dumps(obj), status=status, mimetype="application/json",
                        headers=headers or {})
