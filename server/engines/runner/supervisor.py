"""The server's side of a runner process: start it, talk to it, notice when it dies.

`RunnerModel` implements the `LoadedModel` interface (core/engine.py) by forwarding to the
child process, so the core and the dialects do not know where the model runs. One reader
thread per runner takes its messages (call replies, and each scheduler step's tokens for
every sequence) and hands them to the waiting request threads. When the runner dies, the
reader sees the socket close: every request on that model gets a `RunnerCrashed` naming the
model, the signal and llama.cpp's last error line, and the runtime starts a new runner on the
next request.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ...core.engine import EngineStats, GenerationEnd, GenerationJob, ModelInfo, PreparedJob, Token
from ...core.errors import DMRError, EngineFailure, RunnerCrashed

log = logging.getLogger(__name__)

#: Runners are started from this one long-lived thread: the parent-death signal fires when the
#: thread that forked the child ends, and request threads may end.
_spawner = ThreadPoolExecutor(1, thread_name_prefix="runner-spawner")

#: Lines llama.cpp writes when it fails: our log callback's errors, and ggml's aborts.
_LLAMA_ERROR = re.compile(r"llama\.cpp: |GGML_ASSERT|ggml_abort")
_FRAME = re.compile(r'File "([^"]+)", line (\d+) in (\S+)')


class ProbeCrashed(RunnerCrashed):
    """The runner died in its start-up probe decode (see engines/cpu.py)."""


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"signal {-returncode}, {name}"
    return f"exit status {returncode}"


class _Stream:
    """Tokens of one sequence in a runner; closing it cancels the sequence there."""

    def __init__(self, runner: RunnerModel, key: int):
        self._runner = runner
        self._key = key
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self._done = False

    def __iter__(self) -> Iterator[Token | GenerationEnd]:
        try:
            while True:
                item = self.queue.get()
                if isinstance(item, BaseException):
                    self._done = True
                    raise item
                yield item
                if isinstance(item, GenerationEnd):
                    self._done = True
                    return
        finally:
            self.close()

    def cancel(self) -> None:
        if not self._done:
            self._runner._send_quietly(("cancel", self._key))

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._runner._send_quietly(("cancel", self._key))


class RunnerModel:
    """A model loaded in a runner process of its own."""

    def __init__(self, name: str, path: str, settings: Any, *, compute_dir: str, cores: int,
                 env: dict[str, str] | None = None):
        from .protocol import Channel

        self.name = name
        self.settings = settings
        self._lines: deque[str] = deque(maxlen=200)
        self._streams: dict[int, _Stream] = {}
        self._calls: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._embeds = 0
        self._failure: DMRError | None = None
        self._unloading = False
        self._probing = False
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", "server.engines.runner.child", str(theirs.fileno()),
               str(os.getpid())]
        try:
            self._proc = _spawner.submit(
                subprocess.Popen, cmd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}).result()
        finally:
            theirs.close()
        self.pid = self._proc.pid
        self._channel = Channel(ours)
        self._log_thread = threading.Thread(target=self._relay_log, daemon=True,
                                            name=f"runner-log-{self.pid}")
        self._log_thread.start()
        self.info: ModelInfo = self._start(path, compute_dir, cores)
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"runner-reader-{self.pid}")
        self._reader.start()

    # ------------------------------------------------------------------ start-up and death

    def _start(self, path: str, compute_dir: str, cores: int) -> ModelInfo:
        try:
            self._channel.send(("load", path, self.settings, compute_dir, cores))
            while True:
                message = self._channel.recv()
                if message[0] == "probing":
                    self._probing = True
                elif message[0] == "ready":
                    return message[1]
                elif message[0] == "load_failed":
                    self._wait_exit()
                    raise message[1]
        except (EOFError, OSError):
            pass
        returncode = self._wait_exit()
        crash = ProbeCrashed if self._probing else RunnerCrashed
        raise crash(self.name, describe_exit(returncode), self.last_error(),
                    while_="in its start-up probe" if self._probing else "while loading",
                    hint=self.crash_hint(returncode))

    def _wait_exit(self, timeout: float = 10.0) -> int | None:
        try:
            returncode = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            returncode = self._proc.wait()
        self._log_thread.join(2.0)  # its last words (a faulthandler traceback) come first
        self._channel.close()
        return returncode

    def _relay_log(self) -> None:
        for raw in self._proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            self._lines.append(line)
            level = logging.WARNING if line.startswith(("ERROR", "WARNING", "Fatal", "  File",
                                                        "Current thread", "Thread")) \
                else logging.INFO
            log.log(level, "[%s runner %d] %s", self.name, self.pid, line)

    def last_error(self) -> str | None:
        """llama.cpp's last error line, or where the runner was when it crashed."""
        lines = list(self._lines)
        for line in reversed(lines):
            if _LLAMA_ERROR.search(line):
                return line.split("llama.cpp: ", 1)[-1].strip()
        try:  # faulthandler: the crashing thread's innermost frame
            start = max(i for i, line in enumerate(lines) if line.startswith("Current thread"))
        except ValueError:
            return None
        for line in lines[start + 1:]:
            match = _FRAME.search(line)
            if match:
                return (f"no error line; it crashed in {match.group(3)} "
                        f"({os.path.basename(match.group(1))}:{match.group(2)})")
        return None

    def crash_hint(self, returncode: int | None) -> str:
        if returncode == -signal.SIGKILL:
            return ("SIGKILL is usually the kernel's out-of-memory killer: free memory, or "
                    "lower this model's context_size or parallel, or set memory_budget "
                    "(DMR_MEMORY_BUDGET) so that models are unloaded before memory runs out.")
        if self.settings.use_extra_buffers:
            return ("If it keeps crashing, try `extra_buffers: off` (DMR_EXTRA_BUFFERS=off, or "
                    f"`dmr configure --extra-buffers off {self.name}`, or the runtime flag "
                    "--no-repack): llama.cpp's AMX and repack kernels crash on some CPUs.")
        return ("It already runs without extra buffers; the model file may be damaged (pull it "
                "again) or need a newer llama.cpp.")

    def _read(self) -> None:
        try:
            while True:
                message = self._channel.recv()
                kind = message[0]
                if kind == "out":
                    for key, item in message[1]:
                        self._deliver(key, item)
                elif kind == "reply":
                    _, call_id, ok, value = message
                    with self._lock:
                        future = self._calls.pop(call_id, None)
                    if future is not None:
                        (future.set_result if ok else future.set_exception)(value)
        except (EOFError, OSError):
            pass
        self._died()

    def _deliver(self, key: int, item: Any) -> None:
        with self._lock:
            stream = self._streams.get(key)
            if isinstance(item, GenerationEnd | BaseException):
                self._streams.pop(key, None)
        if stream is not None:
            stream.queue.put(item)

    def _died(self) -> None:
        """Fail everything in flight on this runner; the reader thread or `alive()` calls it,
        whichever notices first (the second call finds the failure set and does nothing)."""
        returncode = self._wait_exit()
        if self._failure is not None:
            return
        if self._unloading:
            failure: DMRError = EngineFailure("the model was unloaded")
        else:
            failure = RunnerCrashed(self.name, describe_exit(returncode), self.last_error(),
                                    hint=self.crash_hint(returncode))
            log.error("%s", failure.message)
        with self._lock:
            if self._failure is not None:
                return
            self._failure = failure
            streams, self._streams = list(self._streams.values()), {}
            calls, self._calls = list(self._calls.values()), {}
        for stream in streams:
            stream.queue.put(failure)
        for future in calls:
            future.set_exception(failure)

    # ------------------------------------------------------------------ talking to the runner

    def _send_quietly(self, message: tuple) -> None:
        try:
            self._channel.send(message)
        except OSError:  # the runner is gone; the reader reports why
            pass

    def _call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        future: Future = Future()
        with self._lock:
            if self._failure is not None:
                raise self._failure
            call_id = next(self._ids)
            self._calls[call_id] = future
        self._send_quietly(("call", call_id, method, args))
        try:
            return future.result(timeout)
        except FutureTimeout:
            with self._lock:
                self._calls.pop(call_id, None)
            raise EngineFailure(f"the runner for {self.name} did not answer {method} "
                                f"within {timeout:g} s") from None

    # ------------------------------------------------------------------ LoadedModel

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        return self._call("tokenize", text, add_special, parse_special)

    def detokenize(self, tokens: list[int]) -> str:
        return self._call("detokenize", tokens)

    def prepare(self, job: GenerationJob) -> PreparedJob:
        return self._call("prepare", job)

    def generate(self, prepared: PreparedJob) -> _Stream:
        with self._lock:
            if self._failure is not None:
                raise self._failure
            key = next(self._ids)
            stream = self._streams[key] = _Stream(self, key)
        self._send_quietly(("generate", key, prepared))
        return stream

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        with self._lock:
            self._embeds += 1
        try:
            return self._call("embed", inputs)
        finally:
            with self._lock:
                self._embeds -= 1

    def busy(self) -> bool:
        with self._lock:
            return bool(self._streams or self._embeds)

    def stats(self) -> EngineStats:
        if not self.alive():
            return EngineStats()
        try:
            return self._call("stats", timeout=5.0)
        except DMRError:
            return EngineStats()

    def alive(self) -> bool:
        # The process may be gone before the reader thread has noticed: a request arriving
        # then must get a new runner, not a call into the dead one.
        if self._failure is None and self._proc.poll() is not None:
            self._died()
        return self._failure is None

    def rss(self) -> int | None:
        """The runner process's resident memory in bytes (VmRSS), None once it is gone."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return None

    def describe(self) -> str:
        decision = getattr(self, "decision", None)
        return f"runner pid {self.pid}" + (f", {decision.describe()}" if decision else "")

    @property
    def failure(self) -> DMRError | None:
        return self._failure

    def unload(self) -> None:
        """End the runner: its memory goes back to the system."""
        self._unloading = True
        self._send_quietly(("unload",))
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            log.warning("%s runner %d did not exit after unload; killing it", self.name,
                        self.pid)
            self._proc.kill()
        self._reader.join(10)
