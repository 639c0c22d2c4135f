"""Process-wide lifecycle flags the HTTP side reads: set by the Gunicorn worker on SIGTERM so
that endless streams (the recorder's SSE follow) end and graceful shutdown is not held up."""

from __future__ import annotations

import threading

#: Set once the worker has been told to stop.
STOPPING = threading.Event()
