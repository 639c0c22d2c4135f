"""Which of llama.cpp's CPU code paths to use, decided on the machine we run on.

llama.cpp compiles kernels for the CPU it is built on, and some of them crash on some CPUs:
its AMX kernels segfault on any multi-token batch on Sapphire Rapids Xeons
(ggml-org/llama.cpp#20824), and the only switch is the model's `use_extra_bufts` (AMX and
CPU_REPACK weight layouts together; llama-server's --no-repack). So `extra_buffers: auto`
never trusts the build host:

- with supervised runners, a runner loads with extra buffers on and decodes a small
  multi-token, multi-sequence batch before it reports ready (the probe). If it dies there, no
  request was in flight; it is started again with them off. The verdict is remembered per
  llama.cpp build and CPU (`cpu-verdicts.json` in the models dir), so the probe's crash
  happens once per machine, not per load.
- in process (no runner to lose), a CPU with AMX gets them off; others keep them on.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

AMX_FLAGS = ("amx_int8", "amx_tile", "amx_bf16")
CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    @property
    def has_amx(self) -> bool:
        return any(flag in self.flags for flag in AMX_FLAGS)

    def signature(self) -> str:
        return f"{self.model} | {' '.join(sorted(self.flags))}"


def parse_cpuinfo(text: str) -> CpuInfo:
    model, flags = "unknown CPU", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model, flags)


@lru_cache(maxsize=1)
def read_cpu() -> CpuInfo:
    """This machine's CPU; `DMR_CPUINFO` names another cpuinfo file (to test other CPUs)."""
    path = os.environ.get("DMR_CPUINFO") or "/proc/cpuinfo"
    try:
        return parse_cpuinfo(Path(path).read_text(errors="replace"))
    except OSError:
        return CpuInfo("unknown CPU", frozenset())


@lru_cache(maxsize=1)
def build_id() -> str:
    """The installed llama.cpp build, without loading it: the package version and the size and
    time of its shared libraries (a rebuild for another CPU changes them)."""
    import importlib.util
    from importlib import metadata

    try:
        version = metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        version = "unknown"
    parts = [f"llama-cpp-python {version}"]
    spec = importlib.util.find_spec("llama_cpp")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for lib in sorted(Path(location).glob("lib/*.so*")):
            if lib.is_symlink():
                continue
            stat = lib.stat()
            parts.append(f"{lib.name}:{stat.st_size}:{int(stat.st_mtime)}")
    return " ".join(parts)


@dataclass(frozen=True)
class Decision:
    """What a runner loads with: `extra_buffers` "on"/"off", whether it probes, and why."""

    setting: str
    extra_buffers: str
    probe: bool
    reason: str

    def describe(self) -> str:
        return f"extra buffers {self.extra_buffers} ({self.setting}: {self.reason})"


class Verdicts:
    """Probe results per llama.cpp build and CPU, kept in a small JSON file."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()

    @staticmethod
    def key(build: str, cpu: CpuInfo) -> str:
        return hashlib.sha256(f"{build}\n{cpu.signature()}".encode()).hexdigest()[:32]

    def _read(self) -> dict:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> dict | None:
        with self._lock:
            entry = self._read().get(key)
            return entry if isinstance(entry, dict) else None

    def put(self, key: str, cpu: CpuInfo, extra_buffers: str, reason: str) -> None:
        if self.path is None:
            return
        with self._lock:
            data = self._read()
            data[key] = {"extra_buffers": extra_buffers, "reason": reason, "cpu": cpu.model,
                         "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(data, indent=1))
                os.replace(tmp, self.path)
            except OSError:  # a read-only store only loses the memo: the probe runs again
                tmp.unlink(missing_ok=True)


def decide(setting: str, *, cpu: CpuInfo, build: str, verdicts: Verdicts,
           supervised: bool) -> Decision:
    """Resolve `extra_buffers` for one load."""
    if setting not in CHOICES:
        raise ValueError(f"extra_buffers must be one of {', '.join(CHOICES)}, not {setting!r}")
    if setting != "auto":
        return Decision(setting, setting, False, "as configured")
    if not supervised:
        if cpu.has_amx:
            return Decision("auto", "off", False, "this CPU has AMX, whose llama.cpp kernels "
                            "crash on multi-token batches, and there is no runner to probe it")
        return Decision("auto", "on", False, "no AMX on this CPU")
    known = verdicts.get(Verdicts.key(build, cpu))
    if known and known.get("extra_buffers") in ("on", "off"):
        return Decision("auto", known["extra_buffers"], False,
                        f"remembered for this CPU and llama.cpp build: {known.get('reason')}")
    return Decision("auto", "on", True, "probing a multi-token decode on this CPU")


def probe_passed(cpu: CpuInfo, build: str, verdicts: Verdicts) -> Decision:
    reason = "a multi-token probe decode passed"
    verdicts.put(Verdicts.key(build, cpu), cpu, "on", reason)
    return Decision("auto", "on", False, reason)


def probe_crashed(cpu: CpuInfo, build: str, verdicts: Verdicts, how: str) -> Decision:
    amx = " (the CPU has AMX: ggml-org/llama.cpp#20824)" if cpu.has_amx else ""
    reason = f"a multi-token probe decode with them on crashed ({how}){amx}"
    verdicts.put(Verdicts.key(build, cpu), cpu, "off", reason)
    return Decision("auto", "off", False, reason)
