"""llama.cpp's process-wide parts: backend start-up, its log, and loading a model file.

llama.cpp logs through one C callback per process. Errors go to our log (a runner process
writes it to stderr, where the server keeps the last lines to say why a runner died), and
while a model loads they are also collected for that thread, to say why a load failed.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

import llama_cpp as L

from ...core.errors import ModelLoadFailed
from . import faults

log = logging.getLogger(__name__)

_backend_ready = False
_backend_lock = threading.Lock()

#: Per thread: llama.cpp's error lines while a model loads, to say why a load failed.
_load_errors = threading.local()

GGML_LOG_LEVEL_ERROR = 4


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _log_callback(level, text, user_data):  # pragma: no cover - called from C
    if level == GGML_LOG_LEVEL_ERROR and text:
        line = text.decode(errors="replace").rstrip()
        log.error("llama.cpp: %s", line)
        lines = getattr(_load_errors, "lines", None)
        if lines is not None:
            lines.append(line)


def init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            L.llama_backend_init()
            L.llama_log_set(_log_callback, ctypes.c_void_p())
            _backend_ready = True


def system_info() -> str:
    """llama.cpp's build line (`CPU : AVX2 = 1 | ... | AMX_INT8 = 1 | REPACK = 1`)."""
    init_backend()
    return L.llama_print_system_info().decode(errors="replace").strip()


def _first_cause(lines: list[str]) -> str:
    """The line that says what is wrong, not the "failed to load" lines around it."""
    for line in lines:
        cause = line.split("error loading model: ", 1)[1] if "error loading model: " in line \
            else line.split(": ", 1)[-1]
        if "failed to" not in cause:
            return cause
    return ""


_SPLIT_MODES = {"none": 0, "layer": 1, "row": 2}


def load_model_file(path: str, *, extra_buffers: bool, settings: Any = None) -> Any:
    """llama_model_load_from_file, with llama.cpp's own words when it refuses the file.

    `extra_buffers` False is llama-server's --no-repack: no AMX or CPU_REPACK weight layouts,
    whose kernels crash on some CPUs (reference: AMX segfaults on multi-token batches).
    `settings` (EngineSettings) brings --mlock, --no-mmap and the GPU flags."""
    init_backend()
    faults.extra_buffers = extra_buffers
    params = L.llama_model_default_params()
    params.use_extra_bufts = extra_buffers
    if settings is not None:
        if settings.mlock or not settings.mmap:
            params.load_mode = {(True, True): L.LLAMA_LOAD_MODE_MMAP_MLOCK,
                                (False, True): L.LLAMA_LOAD_MODE_MLOCK,
                                (False, False): L.LLAMA_LOAD_MODE_NONE}[
                (settings.mmap, settings.mlock)]
        if settings.n_gpu_layers is not None:
            params.n_gpu_layers = settings.n_gpu_layers
        if settings.main_gpu is not None:
            params.main_gpu = settings.main_gpu
        if settings.split_mode is not None:
            params.split_mode = _SPLIT_MODES[settings.split_mode]
    _load_errors.lines = []
    try:
        model = L.llama_model_load_from_file(path.encode(), params)
        reasons = _load_errors.lines
    finally:
        _load_errors.lines = None
    if not model:
        detail = _first_cause(reasons)
        raise ModelLoadFailed(path, "llama.cpp rejected its file"
                              + (f" ({detail})" if detail else ""))
    return model
