"""Default request settings a model carries: what a request gets when it does not say.

A bare `dmr run ai/smollm2 "Say hello in French."` used to run with generic defaults
(temperature 0.8, no length cap) that make a small model ramble for thousands of tokens; Ollama
ships per-model defaults (Modelfile `PARAMETER`) and llama-server reads the GGUF's own. Here
defaults come from, the later beating the earlier:

1. `card`: the model card's recommendation, for models we know by their GGUF metadata (the
   bundled SmolLM2: temperature 0.2, top_p 0.9, as Hugging Face's card says);
2. `gguf`: the file's own `general.sampling.*` keys, where its converter wrote them;
3. `model`: what the model was built with (Ollama `/api/create` parameters and system prompt,
   kept in its config blob under `defaults`, so they travel with push and pull);
4. `configured`: `dmr configure --runtime-flag --temp --runtime-flag 0.7 MODEL` (persisted with
   the runner configuration).

A request's own fields always win over all of them (core/defaults.py applies them).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from ..core.errors import InvalidRequest
from .gguf import read_header

#: Defaults that are sampling parameters (the names of core.types.Sampling's fields).
SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n",
            "presence_penalty", "frequency_penalty", "seed")

SOURCES = ("card", "gguf", "model", "configured")


@dataclass
class ModelDefaults:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    #: Longest answer in tokens when a request sets none.
    max_tokens: int | None = None
    stop: list[str] | None = None
    #: System prompt for conversations that bring none.
    system: str | None = None

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    def over(self, base: ModelDefaults) -> ModelDefaults:
        """These defaults where set, `base`'s elsewhere."""
        return dataclasses.replace(base, **self.values())

    @classmethod
    def from_values(cls, values: dict[str, Any], where: str) -> ModelDefaults:
        """Checked values (from JSON, a Modelfile, flags); InvalidRequest names a bad one."""
        out = cls()
        for key, value in values.items():
            if value is None:
                continue
            setattr(out, key, _checked(key, value, where))
        return out


#: Allowed ranges of the numeric defaults (what the dialects accept in a request).
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "temperature": (0, 5), "top_p": (0, 1), "top_k": (0, None), "min_p": (0, 1),
    "repeat_penalty": (0, 10), "repeat_last_n": (-1, None), "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2), "seed": (None, None), "max_tokens": (1, None),
}
_INTEGERS = {"top_k", "repeat_last_n", "seed", "max_tokens"}


def _checked(key: str, value: Any, where: str) -> Any:
    names = {f.name for f in fields(ModelDefaults)}
    if key not in names:
        raise InvalidRequest(f"{where}: unknown default {key!r} (known: "
                             f"{', '.join(sorted(names))})", param=where)
    if key == "stop":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
            raise InvalidRequest(f"{where}: stop must be a list of non-empty strings",
                                 param=where)
        return list(items)
    if key == "system":
        if not isinstance(value, str):
            raise InvalidRequest(f"{where}: system must be a string", param=where)
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{where}: {key} must be a number, got {value!r}",
                             param=where) from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise InvalidRequest(f"{where}: {key} must be a number, got {value!r}", param=where)
    if key in _INTEGERS:
        if number != int(number):
            raise InvalidRequest(f"{where}: {key} must be a whole number, got {value!r}",
                                 param=where)
        number = int(number)
    low, high = _RANGES[key]
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise InvalidRequest(f"{where}: {key} must be {bounds}, got {value!r}", param=where)
    return number


# ------------------------------------------------------------------------------ sources

#: Model cards we know, recognised by GGUF metadata: (organization, basename) -> defaults.
#: SmolLM2 (HuggingFaceTB/SmolLM2-*-Instruct): "temperature=0.2, top_p=0.9" (its model card).
#: The repeat penalty and the length cap are ours: at 135M parameters it still falls into
#: loops ("a language of the world, a language of the world, ...") without them.
CARDS: dict[tuple[str, str], ModelDefaults] = {
    ("huggingfacetb", "smollm2"): ModelDefaults(temperature=0.2, top_p=0.9,
                                                repeat_penalty=1.1, max_tokens=512),
}

#: GGUF `general.sampling.*` keys (as llama.cpp's converter writes them) -> defaults.
GGUF_KEYS = {
    "general.sampling.temp": "temperature", "general.sampling.top_p": "top_p",
    "general.sampling.top_k": "top_k", "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repeat_penalty",
    "general.sampling.penalty_last_n": "repeat_last_n",
}


def from_card(meta: dict[str, Any]) -> ModelDefaults:
    key = (str(meta.get("general.organization", "")).lower(),
           str(meta.get("general.basename", "")).lower())
    return dataclasses.replace(CARDS[key]) if key in CARDS else ModelDefaults()


def from_gguf(meta: dict[str, Any]) -> ModelDefaults:
    values = {}
    for key, name in GGUF_KEYS.items():
        if key in meta:
            values[name] = meta[key]
    try:
        return ModelDefaults.from_values(values, "gguf")
    except InvalidRequest:  # a file's odd value is not the user's error: ignore the file's
        return ModelDefaults()


#: Ollama Modelfile PARAMETER names -> ours (num_ctx is the context size, not a default).
OLLAMA_PARAMETERS = {
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
    "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
    "seed": "seed", "num_predict": "max_tokens", "stop": "stop",
}
#: Ollama parameters that only tune Ollama's own runner: accepted, no effect here.
OLLAMA_RUNNER_ONLY = {"num_gpu", "num_thread", "num_batch", "num_keep", "use_mmap",
                      "use_mlock", "numa", "low_vram", "main_gpu", "typical_p",
                      "mirostat", "mirostat_eta", "mirostat_tau", "penalize_newline", "tfs_z"}


def from_ollama(parameters: dict[str, Any], where: str = "parameters") -> ModelDefaults:
    """Defaults from Ollama's `parameters` (an /api/create request, or a Modelfile's
    PARAMETER lines); num_ctx is left to the caller."""
    values: dict[str, Any] = {}
    for key, value in (parameters or {}).items():
        if key == "num_ctx" or key in OLLAMA_RUNNER_ONLY:
            continue
        if key not in OLLAMA_PARAMETERS:
            raise InvalidRequest(f"{where}: unknown parameter {key!r}", param=where)
        name = OLLAMA_PARAMETERS[key]
        if name == "max_tokens" and isinstance(value, int | float) and value < 0:
            continue  # -1: until done
        if name == "stop":
            value = [value] if isinstance(value, str) else list(value)
            values["stop"] = values.get("stop", []) + value
            continue
        values[name] = value
    return ModelDefaults.from_values(values, where)


def to_ollama(defaults: ModelDefaults, context_size: int | None) -> list[tuple[str, Any]]:
    """(Ollama parameter, value) pairs, for /api/show's `parameters` and `modelfile`."""
    back = {ours: theirs for theirs, ours in OLLAMA_PARAMETERS.items()}
    out: list[tuple[str, Any]] = []
    if context_size:
        out.append(("num_ctx", context_size))
    for key, value in defaults.values().items():
        if key == "system":
            continue
        if key == "stop":
            out.extend(("stop", s) for s in value)
        else:
            out.append((back[key], value))
    return out


@dataclass
class Resolved:
    """A model's effective defaults and where each one came from."""

    defaults: ModelDefaults
    sources: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {key: {"value": value, "source": self.sources[key]}
                for key, value in self.defaults.values().items()}


def resolve(layers: list[tuple[str, ModelDefaults]]) -> Resolved:
    """Merge (source, defaults) layers, later ones winning."""
    merged = ModelDefaults()
    sources: dict[str, str] = {}
    for source, layer in layers:
        merged = layer.over(merged)
        for key in layer.values():
            sources[key] = source
    return Resolved(merged, sources)


@lru_cache(maxsize=64)
def _header(path: str) -> dict[str, Any]:
    """GGUF metadata of a weights blob (content-addressed: a path's header never changes)."""
    try:
        return read_header(path)[0]
    except Exception:  # a damaged file is reported when it loads, not here
        return {}


def for_model(config: dict[str, Any], configured: ModelDefaults | None = None,
              gguf_path: str | None = None) -> Resolved:
    """A stored model's defaults, from its config (`gguf` metadata and `defaults`; the file's
    own header when the config carries no metadata) and its configured runtime flags."""
    meta = config.get("gguf") or (_header(gguf_path) if gguf_path else {})
    try:
        carried = ModelDefaults.from_values(config.get("defaults") or {}, "defaults")
    except InvalidRequest:
        carried = ModelDefaults()
    layers = [("card", from_card(meta)), ("gguf", from_gguf(meta)), ("model", carried)]
    if configured is not None:
        layers.append(("configured", configured))
    return resolve(layers)
