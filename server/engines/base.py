"""The engine port moved to its consumer, `server/core/engine.py`; this name is kept so code
written against the old place still imports (engines implement the port, the core owns it)."""

from ..core.engine import (  # noqa: F401
    Engine,
    EngineStats,
    GenerationEnd,
    GenerationJob,
    LoadedModel,
    MemoryEstimate,
    ModelInfo,
    PreparedJob,
    Token,
    TokenStream,
    format_bytes,
)
