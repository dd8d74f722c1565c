"""Sustained ingest: events per second stored by flask_telemetry (async) next to
a raw SQLAlchemy Core executemany of identical rows, on each database.

The producer records events as fast as it can inside one request context;
the block ends when ``flush()`` reports everything stored. The raw side
inserts prebuilt rows in batches of the same size, one transaction each.
CPU time is measured per thread: the producer (request path) and the writer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import time
import typing as t
import uuid

import sqlalchemy as sa

from flask_telemetry import EventType

from .apps import Variant, build
from .common import Urls, thread_cpu
from .inprocess import DATABASES

BATCH = 500  # TELEMETRY_BATCH_SIZE's default: the raw side uses the same
USER_AGENT = "benchmark/1.0 (X11; Linux x86_64)"
METADATA = {"key": "user:42"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trial:
    """One ingest block: rate and CPU seconds per event by thread."""

    rate: float
    request_cpu: float
    writer_cpu: float


def _raw_rows(dialect: str, events: int) -> list[dict[str, t.Any]]:
    occurred = dt.datetime.now(dt.UTC)
    if dialect != "postgresql":
        occurred = occurred.replace(tzinfo=None)  # DATETIME: naive UTC
    row = {
        "actor_type": "anonymous",
        "actor_id": None,
        "event_type": "cache_miss",
        "severity": "info",
        "request_id": str(uuid.uuid4()),
        "route_name": "hello",
        "ip_address": "127.0.0.1",
        "user_agent": USER_AGENT,
        "metadata": dict(METADATA),
        "occurred_at": occurred,
    }
    return [dict(row) for _ in range(events)]


def run(urls: Urls, *, rounds: int, events: int) -> dict[str, dict[str, list[float]]]:
    """Per database: per-round rate ratio and CPU per event of each side."""
    return {
        db: _one_database(urls.for_db(db, "ingest"), db, rounds, events)
        for db in DATABASES
    }


def _one_database(
    url: str, db: str, rounds: int, events: int
) -> dict[str, list[float]]:
    built = build(Variant(kind="async", db=db), url)
    app, telemetry = built.app, built.telemetry
    assert telemetry is not None
    # No drops: this measures how fast the writer stores, not the queue bound.
    app.extensions["telemetry"].delivery.queue_size = events * 2
    with app.app_context():
        engine: sa.Engine = app.extensions["sqlalchemy"].engine
    table = telemetry.trace_model.__table__
    insert = table.insert()
    rows = _raw_rows(engine.dialect.name, events)

    def ours(count: int) -> Trial:
        with app.test_request_context("/hello", headers={"User-Agent": USER_AGENT}):
            app.preprocess_request()
            telemetry.record(EventType.CACHE_MISS, metadata=METADATA)
            telemetry.flush(60.0)
            written = telemetry.stats()["written"]
            gc.collect()
            writer = built.writer_ident()
            w0, c0, t0 = thread_cpu(writer), time.thread_time(), time.perf_counter()
            for _ in range(count):
                telemetry.record(EventType.CACHE_MISS, metadata=METADATA)
            c1 = time.thread_time()
            telemetry.flush(600.0)
            t1, w1 = time.perf_counter(), thread_cpu(writer)
            stored = telemetry.stats()["written"] - written
        if stored != count:
            raise RuntimeError(f"{db}: stored {stored} of {count} events")
        return Trial(
            rate=count / (t1 - t0),
            request_cpu=(c1 - c0) / count,
            writer_cpu=(w1 - w0) / count,
        )

    def raw(count: int) -> Trial:
        gc.collect()
        c0, t0 = time.thread_time(), time.perf_counter()
        for start in range(0, count, BATCH):
            with engine.connect() as conn:
                conn.execute(insert, rows[start : start + BATCH])
                conn.commit()
        t1, c1 = time.perf_counter(), time.thread_time()
        return Trial(
            rate=count / (t1 - t0), request_cpu=0.0, writer_cpu=(c1 - c0) / count
        )

    ours(BATCH)
    raw(BATCH)
    out: dict[str, list[float]] = {
        "ratio": [],
        "request_cpu": [],
        "writer_cpu": [],
        "raw_cpu": [],
    }
    for _ in range(rounds):
        first = raw(events)
        mine = ours(events)
        second = raw(events)
        out["ratio"].append(mine.rate / ((first.rate + second.rate) / 2))
        out["request_cpu"].append(mine.request_cpu)
        out["writer_cpu"].append(mine.writer_cpu)
        out["raw_cpu"].append((first.writer_cpu + second.writer_cpu) / 2)
    with app.app_context():
        telemetry.shutdown(5.0)
    with engine.begin() as conn:
        conn.execute(sa.delete(table))
    return out
