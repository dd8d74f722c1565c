"""Async delivery under concurrent real requests: every event stored exactly once."""

from __future__ import annotations

import collections
import concurrent.futures
import gc
import os
import typing as t

import pytest

from conftest import MakeApp
from fault_app import add_event_view, get, serve
from flask_telemetry import ConfigVars, EventType

pytestmark = pytest.mark.slow

THREADS = 8
EVENTS_PER_THREAD = 2000
PER_REQUEST = 50


def test_eight_threads_two_thousand_events_each(make_app: MakeApp) -> None:
    """8 client threads against a threaded server, 2,000 events each, recorded
    by 320 concurrent requests: each (request, event) is stored once."""
    bundle = make_app(
        **{
            ConfigVars.DELIVERY: "async",
            ConfigVars.BATCH_SIZE: 200,
            ConfigVars.FLUSH_INTERVAL: 0.05,
            ConfigVars.QUEUE_SIZE: 100_000,
        }
    )
    add_event_view(bundle.app, bundle.telemetry)
    requests = EVENTS_PER_THREAD // PER_REQUEST

    def client(thread: int) -> list[int]:
        return [
            get(f"{base}/event?seq={thread}-{r}&n={PER_REQUEST}")[0]
            for r in range(requests)
        ]

    with serve(bundle.app) as base:
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            statuses = [s for batch in pool.map(client, range(THREADS)) for s in batch]
        assert statuses == [201] * (THREADS * requests)
        with bundle.app.app_context():
            assert bundle.telemetry.flush(30)
            stats = bundle.telemetry.stats()

    rows = bundle.rows()
    events = collections.Counter(
        (r._mapping["metadata"]["seq"], r._mapping["metadata"]["i"])
        for r in rows
        if r.event_type == EventType.CACHE_MISS
    )
    expected = {
        (f"{thread}-{r}", i)
        for thread in range(THREADS)
        for r in range(requests)
        for i in range(PER_REQUEST)
    }
    assert set(events) == expected
    assert set(events.values()) == {1}
    ends = [r for r in rows if r.event_type == EventType.HTTP_REQUEST_END]
    assert len(ends) == THREADS * requests

    total = THREADS * EVENTS_PER_THREAD + THREADS * requests
    assert stats["accepted"] == stats["written"] == len(rows) == total
    assert sum(stats["dropped"].values()) == 0
    assert stats["queue_depth"] == 0
    assert stats["batches"] < total / 10  # batched, not one INSERT per event


def test_child_process_writes_its_own_events(make_app: MakeApp) -> None:
    """After os.fork the child starts its own writer and counters; the
    parent's queue stays with the parent. Nothing is written twice."""
    bundle = make_app(**{ConfigVars.DELIVERY: "async", ConfigVars.FLUSH_INTERVAL: 60.0})
    telemetry = bundle.telemetry
    with bundle.app.app_context():
        for _ in range(30):
            telemetry.record(EventType.WORKER_JOB_START, metadata={"who": "parent"})
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report through the pipe, never return
            code = 1
            try:
                for i in range(20):
                    telemetry.record(EventType.WORKER_JOB_END, metadata={"i": i})
                flushed = telemetry.flush(10)
                stats: dict[str, t.Any] = telemetry.stats()
                ok = flushed and stats["accepted"] == stats["written"] == 20
                os.write(write, b"ok" if ok else repr(stats).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            report = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert report == b"ok"
        assert telemetry.flush(10)
        stats = telemetry.stats()
    assert stats["accepted"] == stats["written"] == 30
    rows = bundle.rows()
    kinds = collections.Counter(r.event_type for r in rows)
    assert kinds == {"worker_job_start": 30, "worker_job_end": 20}


def test_queued_request_ends_cost_the_garbage_collector_nothing(
    make_app: MakeApp,
) -> None:
    """A queued http_request_end is a tuple of plain values: once
    collections have seen it the garbage collector no longer tracks it, so a long queue
    (an idle or blocked writer) adds nothing to the application's
    collections."""
    bundle = make_app(
        **{
            ConfigVars.DELIVERY: "async",
            ConfigVars.FLUSH_INTERVAL: 3600.0,
            ConfigVars.BATCH_SIZE: 1000,
        }
    )

    @bundle.app.get("/x")
    def x() -> str:
        return "ok"

    client = bundle.client()
    for _ in range(5):
        assert client.get("/x", headers={"traceparent": "junk"}).text == "ok"
    queued = list(bundle.app.extensions["telemetry"].delivery._queue)
    assert len(queued) == 5
    # The first collection untracks the inner tuple of facts, the second
    # the queued tuple around it; a dict inside would keep both tracked.
    gc.collect()
    gc.collect()
    assert not any(gc.is_tracked(item) for item in queued)
    assert len(bundle.rows()) == 5
