"""Sync delivery is bounded by TELEMETRY_SYNC_DEADLINE_MS, whatever the
database or the pool does, and never takes the application's connections.

Real faults: views holding the connections of a small pool, and a TCP proxy
that freezes the connections to PostgreSQL (the server itself keeps running
for everybody else). Timing bounds leave room for a small shared machine.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from conftest import MakeApp, require_backend
from fault_app import get, serve
from flask_telemetry import ConfigVars, EventType, Telemetry
from tcpproxy import proxy_to

pytestmark = pytest.mark.slow

DEADLINE_MS = 400


def test_exhausted_pool_neither_starves_nor_stalls_the_application(
    make_app: MakeApp, backend: str
) -> None:
    """Every view holds one of the pool's two connections while it records
    three events; twelve requests at once. Telemetry writes through a pool of
    its own, so no view waits for telemetry and no view times out on the
    application's own pool."""
    bundle = make_app(
        SQLALCHEMY_ENGINE_OPTIONS={
            "pool_size": 2,
            "max_overflow": 0,
            "pool_timeout": 5,
        },
        **{
            ConfigVars.DELIVERY: "sync",
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.SYNC_DEADLINE_MS: DEADLINE_MS,
        },
    )
    app, db, telemetry = bundle.app, bundle.db, bundle.telemetry

    @app.get("/hold")
    def hold() -> tuple[str, int]:
        db.session.execute(sa.text("SELECT 1"))  # the session holds a connection
        started = time.perf_counter()
        for i in range(3):
            telemetry.record(EventType.CACHE_MISS, metadata={"i": i})
        took = time.perf_counter() - started
        time.sleep(0.02)
        return f"{took:.4f}", 200

    with serve(app) as base, concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: get(f"{base}/hold"), range(24)))
    statuses = [status for status, _ in results]
    with app.app_context():
        assert telemetry.flush(10)
        stats = telemetry.stats()
    rows = bundle.rows()
    worst = max(seconds for _, seconds in results)
    print(f"\n{backend}: 24 requests, worst {worst * 1000:.0f} ms; {stats}")
    assert statuses == [200] * 24  # no request hit the pool's own timeout
    assert stats["written"] == 72 == len(rows)
    assert stats["accepted"] == 72
    # Twelve views share two connections (each holds one for ~20 ms): the
    # queue for them is the application's; telemetry added no deadline.
    assert worst < 3.0


def _frozen_app(url: str, **config: t.Any) -> tuple[Flask, SQLAlchemy, Telemetry]:
    app = Flask("frozen")
    app.config.update(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            ConfigVars.DELIVERY: "sync",
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.SYNC_DEADLINE_MS: DEADLINE_MS,
            ConfigVars.BREAKER_COOLDOWN: 0.5,
            **config,
        }
    )
    db = SQLAlchemy(app)
    telemetry = Telemetry(app)
    return app, db, telemetry


def test_frozen_postgresql_costs_one_deadline_then_nothing(
    server_databases: dict[str, str],
) -> None:
    """The connection to PostgreSQL freezes (as under SIGSTOP): a request
    recording five events waits one deadline in all, later requests do not
    wait, and once it thaws every event is stored or counted."""
    require_backend("postgresql")
    with proxy_to(server_databases["postgresql"]) as (proxy, url):
        app, db, telemetry = _frozen_app(url)
        with app.app_context():
            db.create_all()
            telemetry.record(EventType.CACHE_HIT)  # connected and healthy
            assert telemetry.stats()["written"] == 1
            proxy.freeze()
            try:
                waits = []
                for request in range(3):
                    started = time.perf_counter()
                    for i in range(5):
                        telemetry.record(
                            EventType.CACHE_MISS, metadata={"r": request, "i": i}
                        )
                    waits.append(time.perf_counter() - started)
                frozen = telemetry.stats()
            finally:
                proxy.thaw()
            assert telemetry.flush(20)
            stats = telemetry.stats()
            count = db.session.scalar(
                sa.select(sa.func.count()).select_from(telemetry.trace_model)
            )
            telemetry.shutdown(5)
            db.session.remove()
            db.drop_all()
            db.engine.dispose()
    shown = ", ".join(f"{w * 1000:.0f}" for w in waits)
    print(f"\nfrozen: requests of 5 events waited {shown} ms; {frozen}; {stats}")
    deadline = DEADLINE_MS / 1000
    assert deadline * 0.9 < waits[0] < deadline + 0.3
    assert all(w < 0.05 for w in waits[1:])
    # While frozen, the events were accepted and not lost: in flight.
    assert frozen["queue_depth"] == 15
    # Thawed: the INSERT under way completed, the rest followed.
    assert stats["queue_depth"] == 0
    assert stats["accepted"] == 16 == stats["written"] + sum(stats["dropped"].values())
    assert count == stats["written"]
    assert stats["written"] == 16


def test_silent_server_costs_one_deadline(server_databases: dict[str, str]) -> None:
    """A server that accepts connections and never answers (a hung host):
    two events in one request wait one deadline, not two connect timeouts."""
    require_backend("postgresql")
    with proxy_to(server_databases["postgresql"]) as (proxy, url):
        proxy.freeze()  # new connections hear nothing
        app, db, telemetry = _frozen_app(
            url,
            SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connect_timeout": 2}},
        )
        with app.app_context():
            started = time.perf_counter()
            telemetry.record(EventType.CACHE_MISS)
            telemetry.record(EventType.CACHE_MISS)
            waited = time.perf_counter() - started
            assert telemetry.flush(10)  # the connect attempt times out
            stats = telemetry.stats()
            telemetry.shutdown(1)
            db.engine.dispose()
    print(f"\nsilent server: two events waited {waited * 1000:.0f} ms; {stats}")
    assert waited < DEADLINE_MS / 1000 + 0.3
    assert stats["accepted"] == 2
    assert stats["written"] == 0
    assert stats["dropped"]["storage_error"] + stats["dropped"]["breaker_open"] == 2


def _balanced(s: dict[str, t.Any]) -> bool:
    total = s["written"] + sum(s["dropped"].values()) + s["queue_depth"]
    return bool(s["accepted"] == total and s["queue_depth"] >= 0)


def _hammer(app: Flask, telemetry: Telemetry) -> tuple[int, int, list[t.Any]]:
    """Eight threads record 100 events each while another reads stats()
    without pause; return how many snapshots were read, how many had events
    in flight, and the unbalanced ones."""
    done = threading.Event()
    counts = [0, 0]
    unbalanced: list[dict[str, t.Any]] = []

    def poll() -> None:
        with app.app_context():
            while not done.is_set():
                snapshot = telemetry.stats()
                counts[0] += 1
                counts[1] += bool(snapshot["queue_depth"])
                if not _balanced(snapshot):
                    unbalanced.append(snapshot)

    def work(n: int) -> None:
        with app.app_context():
            for i in range(100):
                telemetry.record(EventType.CACHE_MISS, metadata={"n": n, "i": i})

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
        with app.app_context():
            assert telemetry.flush(10)
    finally:
        done.set()
        poller.join()
    return counts[0], counts[1], unbalanced[:10]


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_stats_balance_in_every_snapshot_under_load(
    make_app: MakeApp, backend: str, delivery: str
) -> None:
    """accepted == written + dropped + queue_depth in every snapshot, read
    from another thread while eight threads record."""
    bundle = make_app(
        **{
            ConfigVars.DELIVERY: delivery,
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.FLUSH_INTERVAL: 0.01,
            ConfigVars.BATCH_SIZE: 20,
        }
    )
    read, busy, unbalanced = _hammer(bundle.app, bundle.telemetry)
    with bundle.app.app_context():
        final = bundle.telemetry.stats()
    print(
        f"\n{backend} {delivery}: {read} snapshots, {busy} with events in "
        f"flight, {len(unbalanced)} unbalanced"
    )
    assert not unbalanced
    assert busy > 10  # the snapshots did catch events on their way
    assert final["accepted"] == final["written"] == 800
    assert final["queue_depth"] == 0
    assert len(bundle.rows()) == 800


def test_batch_abandoned_at_shutdown_is_counted_once(
    server_databases: dict[str, str],
) -> None:
    """shutdown() gives up on a batch whose INSERT hangs (a frozen
    connection) and counts it as shutdown; when the INSERT commits after
    all, the batch is counted as written instead, never as both."""
    require_backend("postgresql")
    with proxy_to(server_databases["postgresql"]) as (proxy, url):
        app, db, telemetry = _frozen_app(
            url, **{ConfigVars.DELIVERY: "async", ConfigVars.FLUSH_INTERVAL: 0.02}
        )
        with app.app_context():
            db.create_all()
            for _ in range(10):
                telemetry.record(EventType.CACHE_HIT)
            assert telemetry.flush(10)
            proxy.freeze()
            try:
                for _ in range(5):
                    telemetry.record(EventType.CACHE_MISS)
                assert not telemetry.flush(0.3)  # the writer's INSERT hangs
                telemetry.shutdown(0.3)
                at_shutdown = telemetry.stats()
            finally:
                proxy.thaw()
            deadline = time.monotonic() + 20
            while telemetry.stats()["written"] < 15 and time.monotonic() < deadline:
                time.sleep(0.05)
            after = telemetry.stats()
            count = db.session.scalar(
                sa.select(sa.func.count()).select_from(telemetry.trace_model)
            )
            db.session.remove()
            db.drop_all()
            db.engine.dispose()
    print(f"\nat shutdown {at_shutdown}; after the thaw {after}")
    assert at_shutdown["dropped"]["shutdown"] == 5
    assert at_shutdown["written"] == 10
    assert after["written"] == 15 == count
    assert after["dropped"]["shutdown"] == 0
    assert after["accepted"] == 15
