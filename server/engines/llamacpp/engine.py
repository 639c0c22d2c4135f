"""Loads GGUF files, each into a supervised runner process (or in process, on request).

Where the extra buffer types are on or off is decided here, per load (engines/cpu.py); a
runner that crashes in its start-up probe is started again with them off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ...core.engine import MemoryEstimate
from .. import cpu
from ..runner.supervisor import ProbeCrashed, RunnerModel
from . import memory
from .settings import EngineSettings

log = logging.getLogger(__name__)

RUNNER_MODES = ("process", "inprocess")


def prompt_cache_key(path: str, name: str, settings: EngineSettings) -> str:
    """The prompt cache's directory name: saved KV states fit only the same weights and the
    same cache layout (llama.cpp checks the layout again when it restores one)."""
    try:
        stat = os.stat(path)
        ident = f"{os.path.realpath(path)}:{stat.st_size}"
    except OSError:
        ident = path
    layout = (f"{name}|{ident}|ctx={settings.context_size}|np={settings.parallel}"
              f"|unified={settings.unified}|kv={settings.kv_tokens}")
    slug = "".join(c if c.isalnum() else "-" for c in name)[:40].strip("-")
    return f"{slug}-{hashlib.sha256(layout.encode()).hexdigest()[:12]}"


class LlamaCppEngine:
    name = "llama.cpp"

    def __init__(self, settings: EngineSettings, *, runner: str = "process",
                 state_dir: str | os.PathLike | None = None):
        if runner not in RUNNER_MODES:
            raise ValueError(f"runner must be one of {', '.join(RUNNER_MODES)}, not {runner!r}")
        if settings.extra_buffers not in cpu.CHOICES:  # fail at start, not at first load
            raise ValueError(f"extra_buffers must be one of {', '.join(cpu.CHOICES)}, "
                             f"not {settings.extra_buffers!r}")
        self.settings = settings
        self.runner = runner
        self._state_dir = Path(state_dir) if state_dir else None
        self._verdicts = cpu.Verdicts(self._state_dir / "cpu-verdicts.json"
                                      if self._state_dir else None)
        self._compute_dir: str | None = None

    def _cores_dir(self) -> str:
        """Where the core locks live (engines/compute.py), shared by this server's runners."""
        if self._compute_dir is None:
            try:
                path = (self._state_dir or Path(tempfile.gettempdir())) / "runners"
                path.mkdir(parents=True, exist_ok=True)
                probe = path / ".writable"
                probe.touch()
            except OSError:
                path = Path(tempfile.mkdtemp(prefix="dmr-runners-"))
            self._compute_dir = str(path)
        return self._compute_dir

    def decide(self, setting: str | None = None) -> cpu.Decision:
        return cpu.decide(setting or self.settings.extra_buffers, cpu=cpu.read_cpu(),
                          build=cpu.build_id(), verdicts=self._verdicts,
                          supervised=self.runner == "process")

    def _settings_for(self, path: str, name: str, context_size: int | None,
                      overrides: dict[str, Any]) -> EngineSettings:
        """`overrides` (parallel, threads, n_batch, ...) come from a model's configured flags;
        threads beyond the server's own (never more than the cores) are cut to them."""
        for key in ("threads", "threads_batch"):
            if overrides.get(key):
                overrides[key] = min(overrides[key], self.settings.threads)
        settings = dataclasses.replace(self.settings, **overrides)
        if context_size:
            settings = dataclasses.replace(settings, context_size=context_size)
        if self._state_dir is not None and settings.prompt_cache_disk_mib > 0:
            settings = dataclasses.replace(settings, prompt_cache_dir=str(
                self._state_dir / "prompt-cache" / prompt_cache_key(path, name, settings)))
        return settings

    def estimate(self, path: str, *, name: str | None = None, context_size: int | None = None,
                 extra_buffers: str | None = None, **overrides: Any) -> MemoryEstimate:
        """The RAM a load with these options will take (engines/llamacpp/memory.py)."""
        return memory.estimate(path, self._settings_for(path, name or Path(path).name,
                                                        context_size, overrides))

    def load(self, path: str, *, name: str | None = None, context_size: int | None = None,
             extra_buffers: str | None = None, **overrides: Any):
        """`overrides` (parallel, threads, n_batch) come from a model's configured flags."""
        name = name or Path(path).name
        settings = self._settings_for(path, name, context_size, overrides)
        decision = self.decide(extra_buffers)
        if self.runner == "inprocess":
            from .model import LlamaCppModel

            model = LlamaCppModel(path, dataclasses.replace(
                settings, extra_buffers=decision.extra_buffers, probe=False))
        else:
            try:
                model = self._start(name, path, settings, decision)
            except ProbeCrashed as exc:
                decision = cpu.probe_crashed(cpu.read_cpu(), cpu.build_id(), self._verdicts,
                                             exc.how)
                log.warning("%s: %s; starting it again with extra buffers off", name,
                            decision.reason)
                model = self._start(name, path, settings, decision)
            if decision.probe:
                decision = cpu.probe_passed(cpu.read_cpu(), cpu.build_id(), self._verdicts)
        model.decision = decision
        return model

    def _start(self, name: str, path: str, settings: EngineSettings,
               decision: cpu.Decision) -> RunnerModel:
        settings = dataclasses.replace(settings, extra_buffers=decision.extra_buffers,
                                       probe=decision.probe)
        return RunnerModel(name, path, settings, compute_dir=self._cores_dir(),
                           cores=os.cpu_count() or 1)

    @staticmethod
    def gpu_backends() -> list[str]:
        """The GPU backends of the installed llama.cpp build (libggml-cuda.so, ...), found
        without loading it; empty for a CPU-only build, where GPU flags have no effect."""
        import importlib.util

        spec = importlib.util.find_spec("llama_cpp")
        found: set[str] = set()
        for location in (spec.submodule_search_locations or []) if spec else []:
            for lib in (Path(location) / "lib").glob("libggml-*.so*"):
                backend = lib.name.split(".so")[0].removeprefix("libggml-")
                if backend not in ("base", "cpu") and not backend.startswith("cpu-"):
                    found.add(backend)
        return sorted(found)

    @staticmethod
    def version() -> str:
        """The installed binding and its version, for /engines/status."""
        from importlib import metadata

        try:
            return f"llama-cpp-python {metadata.version('llama_cpp_python')}"
        except metadata.PackageNotFoundError:
            return "llama-cpp-python unknown"

    @staticmethod
    def disk_usage() -> int:
        """Bytes the installed llama.cpp build takes (located, not loaded: llama.cpp runs in
        the runners), for /engines/df."""
        import importlib.util

        spec = importlib.util.find_spec("llama_cpp")
        root = Path(spec.origin).parent if spec and spec.origin else None
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root else 0

    def status(self) -> str:
        """For /engines/status: how models load on this CPU."""
        decision = self.decide()
        where = "a runner process per model" if self.runner == "process" else "in process"
        if decision.probe:
            return f"{where}, extra buffers auto (not yet probed on this CPU: the next load does)"
        return f"{where}, {decision.describe()}"
