"""Ground-truth labels that arrive some time after their prediction.

Real labels (did the borrower repay?) come late, which is why accuracy is the slowest
canary metric. The simulation holds every pending label in one heap ordered by due time:
a single worker thread, or a scrape, takes the due ones out. A thread or timer per request
would not survive a load test at a few hundred requests a second.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PendingLabel:
    """A label on its way: which group it belongs to and whether the prediction was right."""

    group: str
    correct: bool


class LabelQueue:
    """A thread-safe heap of labels keyed by the (monotonic) time they become due.

    ``clock`` is injectable so that unit tests move time by hand.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, PendingLabel]] = []
        self._seq = itertools.count()  # ties keep insertion order; labels never compare
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def put(self, delay_s: float, label: PendingLabel) -> None:
        """Schedule ``label`` to arrive ``delay_s`` seconds from now."""
        due = self._clock() + delay_s
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), label))
            if self._heap[0][2] is label:
                self._cond.notify_all()  # a new earliest label: waiters must re-arm

    def next_due(self) -> float | None:
        """Clock time of the earliest pending label, or None when nothing is pending."""
        with self._cond:
            return self._heap[0][0] if self._heap else None

    def pop_due(self) -> list[PendingLabel]:
        """Remove and return every label whose time has come, earliest first."""
        now = self._clock()
        with self._cond:
            return self._pop_due_locked(now)

    def wait_due(self, timeout: float) -> list[PendingLabel]:
        """Block until at least one label is due, ``close`` is called, or ``timeout`` passes.

        Returns the due labels (possibly none). Uses the real clock to wait, so it is meant
        for the worker thread; tests with a fake clock call ``pop_due``.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                due = self._pop_due_locked(now)
                if due:
                    return due
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                wait = remaining
                if self._heap:
                    wait = min(wait, max(self._heap[0][0] - now, 0.0))
                self._cond.wait(wait)
            return []

    def close(self) -> None:
        """Wake every waiter for good; pending labels stay (a stopped server loses them)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _pop_due_locked(self, now: float) -> list[PendingLabel]:
        due: list[PendingLabel] = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due


class LabelWorker:
    """One daemon thread that hands due labels to ``deliver`` as they come due."""

    def __init__(self, queue: LabelQueue, deliver: Callable[[PendingLabel], None]) -> None:
        self._queue = queue
        self._deliver = deliver
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="label-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def deliver_due(self) -> int:
        """Deliver what is due now (called before a scrape so it sees every due label)."""
        labels = self._queue.pop_due()
        for label in labels:
            self._deliver(label)
        return len(labels)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            for label in self._queue.wait_due(timeout=1.0):
                self._deliver(label)
