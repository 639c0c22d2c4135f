"""The runner process: one llama.cpp model, served to the server over a socket.

Started by supervisor.py as `python -m server.engines.runner.child FD PARENT_PID`. It dies
with the server (parent-death signal, and end of file on its socket), prints a Python
traceback on a native crash (faulthandler; stderr goes to the server's log), and exits 0
when told to unload, so the model's memory really returns to the system.
"""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...core.engine import GenerationEnd
from ...core.errors import DMRError, EngineFailure
from ..compute import CoreBudget
from .protocol import Channel

log = logging.getLogger("server.engines.runner")

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: end of file on the socket still ends us
        pass
    if os.getppid() != parent_pid:  # the server died before prctl took effect
        os._exit(0)


class Outbox:
    """The scheduler's sink: outputs of one step go to the server as one message."""

    def __init__(self, channel: Channel):
        self._channel = channel
        self.lock = threading.Lock()
        self._items: list[tuple[Any, Any]] = []
        self.sequences: dict[Any, Any] = {}  # key -> scheduler Sequence, for cancel

    def put(self, seq, item: Any) -> None:
        with self.lock:
            self._items.append((seq.key, item))
            if isinstance(item, GenerationEnd | BaseException):
                self.sequences.pop(seq.key, None)

    def flush(self) -> None:
        with self.lock:
            items, self._items = self._items, []
        if items:
            self._channel.send(("out", items))


class Runner:
    def __init__(self, channel: Channel, model, outbox: Outbox):
        self.channel = channel
        self.model = model
        self.outbox = outbox
        self.calls = ThreadPoolExecutor(4, thread_name_prefix="runner-call")

    def run(self) -> None:
        while True:
            try:
                message = self.channel.recv()
            except (EOFError, OSError):  # the server is gone
                os._exit(0)
            kind = message[0]
            if kind == "call":
                self.calls.submit(self._call, *message[1:])
            elif kind == "generate":
                self._generate(*message[1:])
            elif kind == "cancel":
                seq = self.outbox.sequences.get(message[1])
                if seq is not None:
                    self.model.cancel(seq)
            elif kind == "unload":
                self.model.unload()
                self.channel.send(("unloaded",))
                os._exit(0)

    def _call(self, call_id: int, method: str, args: tuple) -> None:
        try:
            if method == "tokenize":
                text, add_special, parse_special = args
                value = self.model.tokenize(text, add_special=add_special,
                                            parse_special=parse_special)
            elif method in ("detokenize", "prepare", "embed", "stats"):
                value = getattr(self.model, method)(*args)
            else:
                raise EngineFailure(f"runner: unknown call {method}")
            reply = ("reply", call_id, True, value)
        except DMRError as exc:
            reply = ("reply", call_id, False, exc)
        except Exception as exc:
            log.exception("runner call %s failed", method)
            reply = ("reply", call_id, False, EngineFailure(f"{method} failed: {exc}"))
        self.channel.send(reply)

    def _generate(self, key: Any, prepared) -> None:
        def register(seq) -> None:  # before the scheduler can end it
            with self.outbox.lock:
                self.outbox.sequences[key] = seq

        try:
            self.model.start(prepared, key, before_submit=register)
        except DMRError as exc:
            self.outbox.sequences.pop(key, None)
            self.channel.send(("out", [(key, exc)]))
        except Exception as exc:
            self.outbox.sequences.pop(key, None)
            log.exception("runner could not start a sequence")
            self.channel.send(("out", [(key, EngineFailure(f"could not start: {exc}"))]))


def main(argv: list[str]) -> int:
    fd, parent_pid = int(argv[0]), int(argv[1])
    _die_with_parent(parent_pid)
    # Ctrl-C and SIGTERM go to the whole process group; the server drains its requests
    # first, and this runner must keep serving them. It ends with the server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    faulthandler.enable()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    channel = Channel(socket.socket(fileno=fd))
    try:
        _, path, settings, compute_dir, cores = channel.recv()
    except (EOFError, OSError):
        return 0
    from ..llamacpp.model import LlamaCppModel

    outbox = Outbox(channel)
    try:
        model = LlamaCppModel(path, settings, sink=outbox,
                              compute=CoreBudget(compute_dir, cores, settings.threads),
                              on_probe=lambda: channel.send(("probing",)))
    except DMRError as exc:
        channel.send(("load_failed", exc))
        return 0
    except Exception as exc:
        log.exception("load failed")
        channel.send(("load_failed", EngineFailure(f"the runner could not load the model: {exc}")))
        return 0
    channel.send(("ready", model.info, os.getpid()))
    Runner(channel, model, outbox).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
