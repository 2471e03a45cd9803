"""Run a generator ahead of the page and hand its items over in batches at a bounded rate.

A streaming handler that yields one UI update per model token makes the model wait for the page
(every yield is a round trip through Gradio's queue and the websocket). ``RunAhead`` runs the
producer in a thread of its own, filling a queue, and ``RunAhead.batches`` drains that queue into
batches: one as soon as the interval since the last one has passed, and one at each *boundary*
item (an item that must not be merged with the ones before it, e.g. a new image preview). The
number of batches then depends on the elapsed time and the boundaries, not on the item count.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = 0, 1, 2


class RunAhead(Generic[T]):
    """Iterate ``make()`` in a daemon thread; closing ``batches`` (or ``stop``) ends it.

    The thread checks the stop flag between items and closes the producer's iterator, so a
    cancelled consumer (Gradio's Stop closes the handler's generator) frees the model after the
    current step.
    """

    def __init__(self, make: Callable[[], Iterator[T]]) -> None:
        self._make = make
        self._boundary: Callable[[T], bool] = lambda _: False
        self._queue: queue.SimpleQueue[tuple[int, object]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set with each item the consumer must not sit on
        self._thread = threading.Thread(target=self._run, name="reasongen-run-ahead", daemon=True)
        self.finished = threading.Event()
        """Set when the producer thread has ended (finished, failed or stopped)."""

    def _run(self) -> None:
        try:
            it = self._make()
            try:
                for item in it:
                    self._queue.put((_ITEM, item))
                    if self._boundary(item):
                        self._wake.set()
                    if self._stop.is_set():
                        break
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
        except BaseException as err:  # handed to the consumer, raised there
            self._queue.put((_ERROR, err))
        else:
            self._queue.put((_END, None))
        finally:
            self._wake.set()
            self.finished.set()

    def stop(self) -> None:
        """Ask the producer to stop after its current item."""
        self._stop.set()

    def batches(
        self, interval_s: float, boundary: Callable[[T], bool] = lambda _: False
    ) -> Iterator[list[T]]:
        """Start the producer and yield its items in order, grouped into non-empty lists.

        The consumer sleeps between batches (it does not wake per item, so it takes little from
        the producer). A batch is yielded when ``interval_s`` has passed since the previous one
        (the first items go out at once), before and right after a ``boundary`` item (so it is
        alone in its batch), and at the end. The producer's exception is raised here, after the
        items it yielded before failing.
        """
        self._boundary = boundary
        self._thread.start()
        pending: list[T] = []
        last = float("-inf")
        try:
            while True:
                if pending:  # sleep until the interval is up or an urgent item (boundary, end) arrives
                    self._wake.wait(max(0.0, last + interval_s - time.monotonic()))
                    items = []
                else:
                    items = [self._queue.get()]
                self._wake.clear()
                items += self._drain()
                for kind, item in items:
                    if kind == _END:
                        if pending:
                            yield pending
                        return
                    if kind == _ERROR:
                        if pending:
                            yield pending
                        raise item  # type: ignore[misc]
                    if boundary(item):  # type: ignore[arg-type]
                        if pending:
                            yield pending
                        yield [item]  # type: ignore[list-item]
                        pending, last = [], time.monotonic()
                    else:
                        pending.append(item)  # type: ignore[arg-type]
                if pending and time.monotonic() - last >= interval_s:
                    yield pending
                    pending, last = [], time.monotonic()
        finally:
            self._stop.set()

    def _drain(self) -> list[tuple[int, object]]:
        """Everything queued now, without waiting."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out
