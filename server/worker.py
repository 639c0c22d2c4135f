"""Gunicorn's threaded worker with a socket timeout on every client connection.

Stock gthread reads a request's headers and body, and writes the answer, on blocking sockets
with no timeout: a client that stalls (slowloris, a stream nobody reads) holds one of the HTTP
threads, and an open stream, forever. Here a connection that makes no progress for
`client_timeout` seconds fails with a timeout: the request is dropped and, through the
response's close, its generation is stopped and its slot freed.
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from . import lifecycle

#: Seconds of no progress before a client's connection is dropped; set by `dmr serve` before
#: Gunicorn forks the worker (0 or less = wait forever).
CLIENT_TIMEOUT = 60.0


class _QuietTimeouts(logging.Filter):
    """Gunicorn logs a stalled client's timeout as a socket error with a traceback; one
    line says it better."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, TimeoutError):
            record.msg, record.args = "dropped a client that stalled for %gs", (CLIENT_TIMEOUT,)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class TimeoutThreadWorker(ThreadWorker):
    """gthread, with `CLIENT_TIMEOUT` on each connection while a request is handled."""

    def init_process(self) -> None:
        logging.getLogger("gunicorn.error").addFilter(_QuietTimeouts())
        super().init_process()

    def handle_exit(self, sig: int, frame: Any) -> None:
        lifecycle.STOPPING.set()  # endless streams (recorder follow) end within a second
        super().handle_exit(sig, frame)

    def handle(self, conn: Any) -> Any:
        # TConn.init() makes the socket blocking with no timeout each time a request starts.
        conn.sock.settimeout(CLIENT_TIMEOUT if CLIENT_TIMEOUT > 0 else None)
        return super().handle(conn)

    def run(self) -> None:
        """Serve; once the requests in flight are done (graceful stop), unload the models,
        so each runner saves its prompt cache instead of dying with this process (its
        parent-death signal fires when Python's exit joins the thread that started it)."""
        try:
            super().run()
        finally:
            state = getattr(self.wsgi, "extensions", {}).get("dmr")
            if state is not None:
                try:
                    state.runtime.close()
                except Exception:  # exiting anyway
                    logging.getLogger(__name__).exception("unloading the models failed")
