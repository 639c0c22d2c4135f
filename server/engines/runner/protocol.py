"""Messages between the server and a runner: length-prefixed pickles over a Unix socket pair.

Both ends are our own code started by us, so pickle is safe here. Messages are tuples whose
first item says what they are:

server -> runner
  ("load", path, EngineSettings)       first and once
  ("call", id, method, args)           tokenize, detokenize, prepare, embed, stats
  ("generate", key, PreparedJob)       start a sequence; its outputs come back as "out"
  ("cancel", key)
  ("unload",)                          free everything and exit 0

runner -> server
  ("ready", ModelInfo, pid)            or ("load_failed", DMRError)
  ("reply", id, ok, value)             value is the result, or the exception when not ok
  ("out", [(key, item), ...])          one message per scheduler step: Token, GenerationEnd,
                                       or an exception that ends the sequence
"""

from __future__ import annotations

import pickle
import socket
import struct
import threading
from typing import Any

_HEADER = struct.Struct("<I")


class Channel:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._reader = sock.makefile("rb")
        self._send_lock = threading.Lock()

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.sock.sendall(_HEADER.pack(len(data)) + data)

    def recv(self) -> Any:
        """The next message; EOFError when the other end is gone."""
        header = self._reader.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise EOFError
        (size,) = _HEADER.unpack(header)
        data = self._reader.read(size)
        if len(data) < size:
            raise EOFError
        return pickle.loads(data)

    def close(self) -> None:
        for closer in (self._reader.close, self.sock.close):
            try:
                closer()
            except OSError:
                pass
