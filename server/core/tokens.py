"""Token facts of a loaded model the pipeline needs: prompt tokenization (BOS as the model
wants it), token ids checked against the vocabulary, and a chat format's preserved tokens."""

from __future__ import annotations

import weakref

from .engine import ModelInfo
from .errors import InvalidRequest


def tokenize_prompt(model, text: str) -> list[int]:
    info: ModelInfo = model.info
    add_bos = info.add_bos and not (info.bos_token and text.startswith(info.bos_token))
    return model.tokenize(text, add_special=add_bos, parse_special=True)


def check_token_ids(tokens: list[int], info: ModelInfo, param: str) -> list[int]:
    bad = [t for t in tokens if not 0 <= t < info.n_vocab]
    if bad:
        raise InvalidRequest(f"token ids out of range [0, {info.n_vocab}): {bad[:5]}", param=param)
    return tokens


#: Per loaded model: the control-token ids of each chat format's markers.
_PRESERVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def preserved_tokens(model, fmt) -> tuple[int, ...]:
    """The control tokens among `fmt`'s markers (tokens a marker has only when special text is
    parsed), which the engine must emit as text for the format's parser to see them."""
    per_model = _PRESERVED.setdefault(model, {})
    if fmt.name not in per_model:
        ids: set[int] = set()
        for marker in sorted(fmt.markers()):
            special = model.tokenize(marker, add_special=False, parse_special=True)
            plain = model.tokenize(marker, add_special=False, parse_special=False)
            ids |= set(special) - set(plain)
        per_model[fmt.name] = tuple(sorted(ids))
    return per_model[fmt.name]
