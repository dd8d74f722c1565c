"""The counters: accept() takes no lock, and every count stays exact."""

from __future__ import annotations

import threading

from flask_telemetry.domain.delivery.stats import Stats


def test_reading_accepted_does_not_change_it() -> None:
    stats = Stats()
    assert stats.accepted == 0
    for _ in range(3):
        stats.accept()
    assert [stats.accepted, stats.accepted] == [3, 3]
    assert stats.snapshot()["accepted"] == 3
    stats.accept()
    assert stats.snapshot()["accepted"] == stats.accepted == 4
    stats.drop("invalid")
    stats.wrote(2)
    snap = stats.snapshot()
    assert (snap["written"], snap["dropped"]["invalid"], snap["queue_depth"]) == (
        2,
        1,
        1,
    )


def test_accepts_from_many_threads_while_reading_are_all_counted() -> None:
    stats = Stats()
    threads_n, each = 8, 20_000
    stop = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            snap = stats.snapshot()
            assert snap["queue_depth"] == snap["accepted"]  # nothing written
            seen.append(snap["accepted"])

    def worker() -> None:
        for _ in range(each):
            stats.accept()

    watching = threading.Thread(target=reader)
    watching.start()
    workers = [threading.Thread(target=worker) for _ in range(threads_n)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    watching.join()
    assert seen == sorted(seen)  # never goes back
    assert stats.accepted == threads_n * each


def test_reset_starts_from_zero() -> None:
    stats = Stats()
    stats.accept()
    stats.snapshot()
    stats.reset()
    assert stats.snapshot()["accepted"] == 0
    stats.accept()
    assert stats.accepted == 1
