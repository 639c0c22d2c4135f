"""Fitting a long conversation into the context by dropping its oldest turns.

Stateful APIs (the Responses API's `previous_response_id`) grow a conversation with every turn
until it no longer fits. With truncation on, the oldest turns are dropped, as OpenAI's
`truncation: "auto"` does, instead of failing with "context too long". System messages (the
instructions) always stay, and so does the latest turn: a conversation that still does not fit
without its history fails as usual.
"""

from __future__ import annotations

import dataclasses

from . import pipeline
from .errors import ContextTooLong
from .runtime import Runtime
from .types import ChatRequest, Message


def drop_oldest_turn(messages: list[Message]) -> list[Message] | None:
    """`messages` without the oldest turn (a user message and every answer and tool result up
    to the next user message), or None when only one turn is left."""
    head = 0
    while head < len(messages) and messages[head].role == "system":
        head += 1
    users = [i for i in range(head, len(messages)) if messages[i].role == "user"]
    # Everything before the second user message (or before the first, when the conversation
    # starts with answers, e.g. a history whose first user message was already dropped).
    cut = users[1] if users and users[0] == head and len(users) > 1 else (
        users[0] if users and users[0] > head else None)
    if cut is None:
        return None
    return messages[:head] + messages[cut:]


def fit(runtime: Runtime, req: ChatRequest, reserve: int = 0) -> ChatRequest:
    """`req` with as few of its oldest turns dropped as needed for its prompt plus `reserve`
    tokens (room for the answer, at most half the context) to fit the model's context."""
    with runtime.use(req.model, req.engine) as lease:
        n_ctx = lease.model.info.n_ctx
    if req.sampling.context_limit:
        n_ctx = min(n_ctx, req.sampling.context_limit)
    reserve = min(max(reserve, 1), n_ctx // 2)
    while True:
        n_prompt = pipeline.count_chat_tokens(runtime, req)
        if n_prompt + reserve <= n_ctx:
            return req
        shorter = drop_oldest_turn(req.messages)
        if shorter is None:
            if n_prompt < n_ctx:
                return req  # the latest turn fits, with less room for the answer
            raise ContextTooLong(n_prompt, n_ctx)
        req = dataclasses.replace(req, messages=shorter)
