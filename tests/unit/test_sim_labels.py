"""The delayed-label queue: labels come out when due, in due order, from one worker."""

from __future__ import annotations

import threading
import time

from canary.sim.labels import LabelQueue, LabelWorker, PendingLabel


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def label(group: str, correct: bool = True) -> PendingLabel:
    return PendingLabel(group=group, correct=correct)


def test_nothing_comes_out_before_its_delay() -> None:
    clock = FakeClock()
    queue = LabelQueue(clock)
    queue.put(5.0, label("a"))
    assert queue.pop_due() == []
    clock.now += 4.999
    assert queue.pop_due() == []
    assert len(queue) == 1
    clock.now += 0.001
    assert queue.pop_due() == [label("a")]
    assert len(queue) == 0


def test_labels_come_out_in_due_order_not_insertion_order() -> None:
    clock = FakeClock()
    queue = LabelQueue(clock)
    queue.put(3.0, label("late"))
    queue.put(1.0, label("early"))
    queue.put(2.0, label("middle"))
    assert queue.next_due() == clock.now + 1.0
    clock.now += 2.5
    assert queue.pop_due() == [label("early"), label("middle")]
    clock.now += 1.0
    assert queue.pop_due() == [label("late")]
    assert queue.next_due() is None


def test_labels_due_at_the_same_time_keep_insertion_order() -> None:
    clock = FakeClock()
    queue = LabelQueue(clock)
    for n in range(50):
        queue.put(1.0, label(f"g{n}", correct=n % 2 == 0))
    clock.now += 1.0
    assert queue.pop_due() == [label(f"g{n}", correct=n % 2 == 0) for n in range(50)]


def test_delay_counts_from_when_the_label_was_put() -> None:
    clock = FakeClock()
    queue = LabelQueue(clock)
    queue.put(10.0, label("first"))
    clock.now += 8.0
    queue.put(1.0, label("second"))  # due 9 s after start: before "first"
    clock.now += 1.0
    assert queue.pop_due() == [label("second")]
    clock.now += 1.0
    assert queue.pop_due() == [label("first")]


def test_wait_due_wakes_when_the_earliest_label_is_due() -> None:
    queue = LabelQueue()
    started = time.monotonic()
    queue.put(0.2, label("a"))
    assert queue.wait_due(timeout=5.0) == [label("a")]
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2.0


def test_wait_due_rearms_when_an_earlier_label_arrives() -> None:
    queue = LabelQueue()
    queue.put(30.0, label("far"))
    result: list[PendingLabel] = []
    waiter = threading.Thread(target=lambda: result.extend(queue.wait_due(timeout=10.0)))
    waiter.start()
    queue.put(0.05, label("near"))  # must not wait for the 30 s label first
    waiter.join(timeout=5.0)
    assert not waiter.is_alive()
    assert result == [label("near")]


def test_wait_due_returns_empty_on_timeout_and_on_close() -> None:
    queue = LabelQueue()
    queue.put(60.0, label("a"))
    assert queue.wait_due(timeout=0.05) == []
    closer = threading.Timer(0.05, queue.close)
    closer.start()
    started = time.monotonic()
    assert queue.wait_due(timeout=10.0) == []
    assert time.monotonic() - started < 5.0
    assert len(queue) == 1  # pending labels are kept, not delivered, on close


def test_one_worker_delivers_every_label_once() -> None:
    queue = LabelQueue()
    delivered: list[PendingLabel] = []
    done = threading.Event()
    threads_before = threading.active_count()
    threads_seen: list[int] = []

    def deliver(item: PendingLabel) -> None:
        delivered.append(item)
        threads_seen.append(threading.active_count())
        if len(delivered) == 300:
            done.set()

    worker = LabelWorker(queue, deliver)
    worker.start()
    try:
        for n in range(300):
            queue.put(0.001 * (n % 30), label(f"g{n}"))
        assert done.wait(timeout=5.0)
    finally:
        worker.stop()
    assert sorted(x.group for x in delivered) == sorted(f"g{n}" for n in range(300))
    assert max(threads_seen) == threads_before + 1  # one worker thread, not one per label


def test_deliver_due_hands_over_what_is_due_without_the_worker() -> None:
    clock = FakeClock()
    queue = LabelQueue(clock)
    delivered: list[PendingLabel] = []
    worker = LabelWorker(queue, delivered.append)  # never started
    queue.put(1.0, label("a"))
    queue.put(2.0, label("b"))
    clock.now += 1.5
    assert worker.deliver_due() == 1
    assert delivered == [label("a")]
