"""Real faults: PostgreSQL stopped under load, a locked table, a dead database
filling the queue. The request never pays for them; every event is counted.

PostgreSQL is stopped and started in a private cluster (see pgcluster.py),
never the shared server. Timing bounds are ratios or generous margins: the
machine is small and shared.
"""

from __future__ import annotations

import contextlib
import sqlite3
import statistics
import time
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from conftest import MakeApp
from fault_app import add_event_view, get, serve
from flask_telemetry import ConfigVars, EventType, Telemetry
from pgcluster import PgCluster, pg_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> t.Iterator[PgCluster]:
    """A private PostgreSQL cluster; a test that stops it starts it again."""
    with pg_cluster() as made:
        yield made


@contextlib.contextmanager
def cluster_app(cluster: PgCluster, **config: t.Any) -> t.Iterator[Flask]:
    """An app on the private cluster with the table created; torn down after."""
    app = Flask("faults")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=cluster.url,
        # The connect timeout is the engine's (see TraceWriter). Pre-ping:
        # the test's own queries after a restart must not meet a connection
        # the restart closed (telemetry's pool copies the setting).
        SQLALCHEMY_ENGINE_OPTIONS={
            "connect_args": {"connect_timeout": 2},
            "pool_pre_ping": True,
        },
        **config,
    )
    db = SQLAlchemy(app)
    telemetry = Telemetry(app)
    add_event_view(app, telemetry)
    with app.app_context():
        db.create_all()
    try:
        yield app
    finally:
        with app.app_context():
            telemetry.shutdown(5)
            if not cluster.running:
                cluster.start()
            db.drop_all()
            db.engine.dispose()


def _stats(app: Flask) -> dict[str, t.Any]:
    telemetry: Telemetry = app.extensions["telemetry"].owner
    with app.app_context():
        telemetry.flush(30)
        stats: dict[str, t.Any] = telemetry.stats()
    assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())
    return stats


def _stored_seqs(app: Flask) -> set[str]:
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT metadata FROM telemetry_traces")
            return {r[0]["seq"] for r in rows if r[0] and "seq" in r[0]}


def _latencies(base: str, prefix: str, count: int) -> list[float]:
    seconds = []
    for i in range(count):
        status, took = get(f"{base}/event?seq={prefix}-{i}")
        assert status == 201  # the view's own answer, whatever the database does
        seconds.append(took)
    return seconds


@pytest.mark.parametrize("delivery", ["async", "sync"])
def test_postgresql_stopped_mid_load_then_restarted(
    cluster: PgCluster, delivery: str
) -> None:
    with (
        cluster_app(
            cluster,
            **{
                ConfigVars.DELIVERY: delivery,
                ConfigVars.FLUSH_INTERVAL: 0.05,
                ConfigVars.MAX_RETRIES: 1,
                ConfigVars.RETRY_BACKOFF: 0.05,
                ConfigVars.BREAKER_THRESHOLD: 3,
                ConfigVars.BREAKER_COOLDOWN: 0.5,
            },
        ) as app,
        serve(app) as base,
    ):
        healthy = _latencies(base, "healthy", 150)
        cluster.stop()
        try:
            down = _latencies(base, "down", 150)
        finally:
            cluster.start()
        # Back up: keep going until an event recorded now is stored (the
        # breaker probes again after its cool-down), without restarting.
        deadline = time.monotonic() + 20
        stored_after: set[str] = set()
        i = 0
        while not stored_after and time.monotonic() < deadline:
            _latencies(base, f"after{i}", 10)
            _stats(app)
            stored_after = {s for s in _stored_seqs(app) if s.startswith("after")}
            i += 1
        stats = _stats(app)

    ratio = statistics.median(down) / statistics.median(healthy)
    print(
        f"\n{delivery}: median request {statistics.median(healthy) * 1000:.2f} ms "
        f"healthy, {statistics.median(down) * 1000:.2f} ms with PostgreSQL down "
        f"(ratio {ratio:.2f}, worst {max(down) * 1000:.1f} ms); {stats}"
    )
    assert stored_after, "nothing recorded after the restart was stored"
    # A ratio, or a few milliseconds: on this small shared machine a median
    # of under a millisecond can triple from other processes' load alone
    # (seen 1 run in 4 before the sync deadline work, too).
    assert ratio < 3 or statistics.median(down) < statistics.median(healthy) + 0.004
    assert max(down) < 2.0  # at most one connect attempt's worth, never a hang
    assert stats["written"] >= 150 + len(stored_after)
    assert sum(stats["dropped"].values()) >= 1  # the outage cost events, counted


def _lock(
    bundle_url: str, backend: str, app: Flask
) -> contextlib.AbstractContextManager[None]:
    """Hold a write lock on telemetry_traces from another session."""

    @contextlib.contextmanager
    def held() -> t.Iterator[None]:
        if backend == "sqlite":
            path = sa.make_url(bundle_url).database
            assert path
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")  # the write lock, held open
            try:
                yield
            finally:
                conn.execute("ROLLBACK")
                conn.close()
            return
        with app.app_context():
            engine = app.extensions["sqlalchemy"].engine
        with engine.connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(
                    "LOCK TABLE telemetry_traces IN ACCESS EXCLUSIVE MODE"
                )
                try:
                    yield
                finally:
                    conn.rollback()
            else:
                conn.exec_driver_sql("LOCK TABLES telemetry_traces WRITE")
                try:
                    yield
                finally:
                    conn.exec_driver_sql("UNLOCK TABLES")

    return held()


LOCK_TIMEOUT_MS = 1000


def test_locked_table_async_requests_not_delayed(
    make_app: MakeApp, backend: str, db_url: str
) -> None:
    bundle = make_app(
        **{
            ConfigVars.DELIVERY: "async",
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.LOCK_TIMEOUT_MS: LOCK_TIMEOUT_MS,
            ConfigVars.FLUSH_INTERVAL: 0.05,
            ConfigVars.MAX_RETRIES: 10,
            ConfigVars.RETRY_BACKOFF: 0.1,
            ConfigVars.BREAKER_THRESHOLD: 100,
        }
    )
    add_event_view(bundle.app, bundle.telemetry)
    with serve(bundle.app) as base:
        free = _latencies(base, "free", 40)
        bundle.rows()  # written, the writer holds no connection now
        with _lock(db_url, backend, bundle.app):
            locked = _latencies(base, "locked", 40)
            time.sleep(LOCK_TIMEOUT_MS / 1000 * 1.5)  # the writer hits the lock
            locked += _latencies(base, "locked-more", 40)
    stats = _stats(bundle.app)
    print(
        f"\n{backend} async, table locked: worst request {max(locked) * 1000:.1f} ms, "
        f"median {statistics.median(locked) * 1000:.2f} ms "
        f"(unlocked {statistics.median(free) * 1000:.2f} ms); {stats}"
    )
    assert max(locked) < LOCK_TIMEOUT_MS / 1000 / 2
    assert statistics.median(locked) < 3 * statistics.median(free) + 0.005
    assert stats["accepted"] == 120
    # The writer waited out the lock, retried, and stored everything.
    assert stats["written"] == 120
    assert len(bundle.rows()) == 120


def test_locked_table_sync_waits_at_most_the_lock_timeout(
    make_app: MakeApp, backend: str, db_url: str
) -> None:
    bundle = make_app(
        **{
            ConfigVars.DELIVERY: "sync",
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.LOCK_TIMEOUT_MS: LOCK_TIMEOUT_MS,
            ConfigVars.STATEMENT_TIMEOUT_MS: 5000,
            ConfigVars.SYNC_DEADLINE_MS: 3 * LOCK_TIMEOUT_MS,
            ConfigVars.BREAKER_THRESHOLD: 5,
            ConfigVars.BREAKER_COOLDOWN: 60.0,
        }
    )
    add_event_view(bundle.app, bundle.telemetry)
    with serve(bundle.app) as base:
        _latencies(base, "free", 5)
        with _lock(db_url, backend, bundle.app):
            locked = _latencies(base, "locked", 6)
    stats = _stats(bundle.app)
    waits = ", ".join(f"{s * 1000:.0f}" for s in locked)
    print(f"\n{backend} sync, table locked: request times {waits} ms; {stats}")
    limit = LOCK_TIMEOUT_MS / 1000
    # The first waits for the lock and gives up at the lock timeout; that
    # was a timeout, so the breaker opens at once and the others do not try.
    assert all(s < limit + 0.5 for s in locked)
    assert locked[0] > limit * 0.8
    assert all(s < limit / 4 for s in locked[1:])
    assert stats["written"] == 5
    assert stats["dropped"]["storage_error"] == 1
    assert stats["dropped"]["breaker_open"] == 5


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_queue_overflow_under_dead_database_stays_bounded(cluster: PgCluster) -> None:
    queue_size = 10_000
    with cluster_app(
        cluster,
        **{
            ConfigVars.DELIVERY: "async",
            ConfigVars.QUEUE_SIZE: queue_size,
            ConfigVars.FLUSH_INTERVAL: 0.05,
            ConfigVars.BREAKER_COOLDOWN: 30.0,
        },
    ) as app:
        telemetry: Telemetry = app.extensions["telemetry"].owner
        cluster.stop()
        try:
            with app.test_request_context("/work"):
                before = _rss_mb()
                for i in range(20_000):
                    telemetry.record(EventType.CACHE_MISS, metadata={"i": i})
                filled = _rss_mb()
                for i in range(80_000):
                    telemetry.record(EventType.CACHE_MISS, metadata={"i": i})
                after = _rss_mb()
                depth = telemetry.stats()["queue_depth"]
                telemetry.shutdown(1)
                stats = telemetry.stats()
        finally:
            cluster.start()
    print(
        f"\nRSS {before:.1f} MB before, {filled:.1f} MB after 20,000 records, "
        f"{after:.1f} MB after 100,000; {stats}"
    )
    assert depth <= queue_size + 500  # the queue plus the batch in hand
    assert after - filled < 8  # 80,000 more records cost no memory to speak of
    assert stats["accepted"] == 100_000
    assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())
    assert stats["written"] == 0
    # Only the queue and the writer's batches ever held an event.
    assert stats["dropped"]["queue_full"] >= 100_000 - queue_size - 2 * 500
