"""Fault injection for the crash tests: make a runner die the way llama.cpp does on a bad CPU.

`DMR_FAULT=amx-segv` makes every multi-token `llama_decode` with extra buffers on SIGSEGV the
process when the CPU (as `engines/cpu.py` reads it, `DMR_CPUINFO` included) has AMX: exactly
the crash of llama.cpp's AMX kernels on Sapphire Rapids (ggml-org/llama.cpp#20824), on any
machine. Unset, it costs one comparison per decode.
"""

from __future__ import annotations

import os
import signal

FAULT = os.environ.get("DMR_FAULT", "")

#: Set by backend.load_model_file: whether this process loaded weights with extra buffers.
extra_buffers = True


def before_decode(n_tokens: int) -> None:
    if FAULT == "amx-segv" and n_tokens > 1 and extra_buffers:
        from ..cpu import read_cpu

        if read_cpu().has_amx:
            os.kill(os.getpid(), signal.SIGSEGV)
