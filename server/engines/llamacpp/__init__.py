"""The llama.cpp engine. Importing this package does not load llama.cpp: the modules that do
(model, scheduler, sampling, embedding, backend) run in runner processes (engines/runner/),
or in the server process with `runner: inprocess`."""

from .engine import LlamaCppEngine
from .settings import EngineSettings

__all__ = ["EngineSettings", "LlamaCppEngine"]
