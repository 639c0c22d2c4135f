"""How one llama.cpp model runs: context, slots, threads, buffers. Plain data, no llama.cpp
import, so the HTTP process can build it and send it to a runner process."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineSettings:
    context_size: int  # per sequence; 0 = the model's training context
    parallel: int
    threads: int
    n_batch: int = 512
    #: Sequences waiting for a slot before new ones are refused as overloaded.
    max_queue: int = 64
    #: KV cells shared by all slots; 0 = context_size x parallel (every slot full at once).
    kv_tokens: int = 0
    #: Seconds a sequence may wait plus generate; 0 = no limit.
    request_timeout: float = 0.0
    #: One KV cache shared by all slots (prefix copies are free, but every sequence's
    #: attention spans every slot's cells) instead of one per slot. A kv_tokens pool implies it.
    kv_unified: bool = False
    #: llama.cpp's extra buffer types (AMX, CPU_REPACK): "auto", "on" or "off". The runner
    #: gets the resolved value (see engines/cpu.py).
    extra_buffers: str = "auto"
    #: Decode a small multi-token, multi-sequence batch right after loading, before the model
    #: is reported ready: where llama.cpp's kernels crash on this CPU, they crash here.
    probe: bool = False
    #: llama-server's runtime flags (store/runner_config.py): threads for prompt batches
    #: (0 = `threads`), --mlock, --no-mmap, RoPE overrides (0 / None = the model's own).
    threads_batch: int = 0
    mlock: bool = False
    mmap: bool = True
    rope_scaling: str | None = None
    rope_freq_base: float = 0.0
    rope_freq_scale: float = 0.0
    #: GPU offload flags: passed to llama.cpp, which ignores them on a CPU-only build.
    n_gpu_layers: int | None = None
    main_gpu: int | None = None
    split_mode: str | None = None
    #: Host RAM for KV states of prompts the slots dropped (prompt_cache.py); 0 = none.
    prompt_cache_mib: int = 0
    #: Disk for them (prompt_spill.py) in `prompt_cache_dir`; 0 or no directory = none.
    prompt_cache_disk_mib: int = 0
    prompt_cache_dir: str | None = None
    #: Prompt lookup drafts (speculative.py): "auto" (where they pay for their rows),
    #: "on" (whenever a match is found), "off".
    speculative: str = "auto"

    @property
    def unified(self) -> bool:
        return self.kv_unified or self.kv_tokens > 0

    @property
    def use_extra_buffers(self) -> bool:
        return self.extra_buffers != "off"
