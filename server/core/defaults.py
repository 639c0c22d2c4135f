"""A model's default settings applied to a request: only where the request says nothing.

The defaults (store/model_defaults.py) fill the sampling fields a request left unset, a
`max_tokens` when it set no limit, stop sequences when it gave none, and a system prompt when
the conversation has none (repetition penalties are left out when a grammar constrains the
answer). Which fields a request set is what its dialect recorded in
`Sampling.explicit`; a dialect that records nothing gets defaults only for fields still at
their dataclass default.
"""

from __future__ import annotations

import dataclasses

from ..store.model_defaults import SAMPLING, ModelDefaults
from .types import ChatRequest, CompletionRequest, Message, Sampling

_PLAIN = Sampling()
#: Defaults left out when a grammar constrains the answer: repetition penalties punish the
#: quotes, colons and commas JSON repeats by nature (a JSON answer degrades into nonsense);
#: in grammar mode the engine's DRY sampler breaks loops instead.
_PENALTIES = ("repeat_penalty", "presence_penalty", "frequency_penalty", "repeat_last_n")


def _unset(sampling: Sampling, name: str) -> bool:
    if sampling.explicit is not None:
        return name not in sampling.explicit
    return getattr(sampling, name) == getattr(_PLAIN, name)


def sampling(s: Sampling, defaults: ModelDefaults, constrained: bool = False) -> Sampling:
    changes = {}
    for name in SAMPLING:
        if constrained and name in _PENALTIES:
            continue
        value = getattr(defaults, name)
        if value is not None and _unset(s, name):
            changes[name] = value
    if defaults.max_tokens is not None and _unset(s, "max_tokens"):
        changes["max_tokens"] = defaults.max_tokens
    if defaults.stop and not s.stop and _unset(s, "stop"):
        changes["stop"] = list(defaults.stop)
    return dataclasses.replace(s, **changes) if changes else s


def chat(req: ChatRequest, defaults: ModelDefaults) -> ChatRequest:
    messages = req.messages
    if defaults.system and not any(m.role == "system" for m in messages):
        messages = [Message("system", defaults.system), *messages]
    constrained = (req.response_schema is not None or req.grammar is not None
                   or (req.tools and req.tool_choice.mode in ("required", "function")))
    s = sampling(req.sampling, defaults, bool(constrained))
    if s is req.sampling and messages is req.messages:
        return req
    return dataclasses.replace(req, sampling=s, messages=messages)


def completion(req: CompletionRequest, defaults: ModelDefaults) -> CompletionRequest:
    s = sampling(req.sampling, defaults,
                 req.response_schema is not None or req.grammar is not None)
    return req if s is req.sampling else dataclasses.replace(req, sampling=s)
