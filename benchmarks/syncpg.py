"""Sync delivery on PostgreSQL next to a raw single-row INSERT and COMMIT.

Four sides, interleaved: ``record()`` in sync mode inside a request
context, with the default settings (durable commits, as the raw insert's)
and with ``TELEMETRY_DURABLE_COMMIT = False`` (``synchronous_commit =
off`` for telemetry's transactions); the
same row inserted with ``engine.connect()``, ``execute``, ``commit``; and
that raw insert preceded by ``SET LOCAL`` timeouts, to show what a round
trip of settings costs on its own.
"""

from __future__ import annotations

import gc
import time

from flask_telemetry import EventType

from .apps import Built, Variant, build
from .common import Urls
from .ingest import METADATA, USER_AGENT, _raw_rows


def run(urls: Urls, *, rounds: int, events: int) -> dict[str, list[float]]:
    """Per round: time per event of sync record() and of raw + timeouts, over raw."""
    built = build(Variant(kind="sync", db="postgresql"), urls.postgres)
    app, telemetry = built.app, built.telemetry
    assert telemetry is not None
    relaxed = build(
        Variant(kind="sync", db="postgresql"),
        urls.postgres,
        create=False,
        config={"TELEMETRY_DURABLE_COMMIT": False},
    )
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    insert = telemetry.trace_model.__table__.insert()
    row = _raw_rows("postgresql", 1)[0]
    timeouts = "SET LOCAL lock_timeout = 500; SET LOCAL statement_timeout = 2000"

    def ours(count: int, side: Built = built) -> float:
        tracer = side.telemetry
        assert tracer is not None
        with side.app.test_request_context(
            "/hello", headers={"User-Agent": USER_AGENT}
        ):
            side.app.preprocess_request()
            gc.collect()
            start = time.perf_counter()
            for _ in range(count):
                tracer.record(EventType.CACHE_MISS, metadata=METADATA)
            return (time.perf_counter() - start) / count

    def raw(count: int, *, with_timeouts: bool = False) -> float:
        gc.collect()
        start = time.perf_counter()
        for _ in range(count):
            with engine.connect() as conn:
                if with_timeouts:
                    conn.exec_driver_sql(timeouts)
                conn.execute(insert, row)
                conn.commit()
        return (time.perf_counter() - start) / count

    ours(50)
    ours(50, relaxed)
    raw(50)
    out: dict[str, list[float]] = {"sync": [], "relaxed": [], "timeouts": []}
    for _ in range(rounds):
        first = raw(events)
        mine = ours(events)
        second = raw(events)
        mine_relaxed = ours(events, relaxed)
        third = raw(events)
        set_local = raw(events, with_timeouts=True)
        last = raw(events)
        out["sync"].append(mine / ((first + second) / 2))
        out["relaxed"].append(mine_relaxed / ((second + third) / 2))
        out["timeouts"].append(set_local / ((third + last) / 2))
    return out
