"""Background responses (`background: true`): generated on a thread of their own.

The client gets the response at once (status `queued`) and polls `GET /responses/{id}`, or
follows the stream, and may drop the connection and resume it with `starting_after` (the
sequence number of the last event it saw): every event of the job is kept while the job is in
memory. `POST /responses/{id}/cancel` stops the generation. The finished response goes to the
store like any other; the event logs of the last few finished jobs stay in memory so a client
that resumes shortly after the end still gets the events as they were sent.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..core.errors import DMRError
from ..core.pipeline import Run
from .keepalive import HEARTBEAT
from .responses_codec import ResponseEncoder

log = logging.getLogger(__name__)

#: Finished jobs whose event logs are kept in memory (running ones always are).
KEEP_FINISHED = 32


class Job:
    """One background response: its run, its encoder and every event it has produced."""

    def __init__(self, encoder: ResponseEncoder, run: Run,
                 error_code: Callable[[DMRError], str | None],
                 on_done: Callable[[dict[str, Any]], None]):
        self.id: str = encoder.response["id"]
        self.encoder = encoder
        self.run = run
        self.events: list[dict[str, Any]] = []
        self.done = False
        self.cancelled = False
        self._error_code = error_code
        self._on_done = on_done
        self._cond = threading.Condition()
        self._publish(encoder.start())

    def start(self) -> None:
        threading.Thread(target=self._work, name=f"response-{self.id[-8:]}",
                         daemon=True).start()

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return copy.deepcopy(self.encoder.response)

    def cancel(self, timeout: float = 10.0) -> None:
        """Stop the generation (its slot is freed at the next step) and wait for the end."""
        with self._cond:
            if self.done:
                return
            self.cancelled = True
        self.run.close()
        with self._cond:
            self._cond.wait_for(lambda: self.done, timeout)

    def follow(self, after: int, heartbeat: float) -> Iterator[dict[str, Any] | object]:
        """The events numbered above `after`, as they come; HEARTBEAT when none came for
        `heartbeat` seconds; ends with the job."""
        position = max(after + 1, 0)  # events[i] has sequence_number i
        while True:
            with self._cond:
                if position >= len(self.events) and not self.done:
                    self._cond.wait(heartbeat)
                batch = self.events[position:]
                finished = self.done
            position += len(batch)
            if not batch and not finished:
                yield HEARTBEAT
            yield from batch
            if finished and not batch:
                return

    # -------------------------------------------------------------------------- worker

    def _publish(self, events: Iterable[dict[str, Any]]) -> None:
        with self._cond:
            for event in events:
                self.events.append(event)
            self._cond.notify_all()

    def _work(self) -> None:
        encoder = self.encoder
        try:
            self._publish(encoder.in_progress())
            for event in self.run.events:
                if self.cancelled:
                    break
                self._publish(encoder.feed(event))
            self._publish(encoder.cancel() if self.cancelled else encoder.finish())
        except DMRError as exc:
            self._publish(encoder.cancel() if self.cancelled
                          else encoder.fail(exc, self._error_code(exc)))
        except Exception as exc:  # a bug must still end the job, and be seen
            if self.cancelled:
                self._publish(encoder.cancel())
            else:
                log.exception("background response %s failed", self.id)
                self._publish(encoder.fail(DMRError(f"internal server error: {exc}"), None))
        finally:
            self.run.close()
            try:
                self._on_done(self.snapshot())
            except Exception:
                log.exception("storing background response %s failed", self.id)
            with self._cond:
                self.done = True
                self._cond.notify_all()


class Jobs:
    """The background jobs of this process: all running ones, the last finished ones."""

    def __init__(self, keep_finished: int = KEEP_FINISHED):
        self.keep_finished = keep_finished
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.done]
            for old in finished[: max(0, len(finished) - self.keep_finished)]:
                del self._jobs[old.id]

    def get(self, response_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(response_id)

    def remove(self, response_id: str) -> None:
        with self._lock:
            self._jobs.pop(response_id, None)
