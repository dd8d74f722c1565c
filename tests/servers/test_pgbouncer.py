"""Behind a real PgBouncer in transaction pooling.

The suite starts a PgBouncer of its own (see pgbouncer_support.py) in front
of the configured PostgreSQL. The application's engine is configured as the
docs tell users to configure it for PgBouncer: psycopg's
``prepare_threshold=None`` in ``connect_args``. Then: gunicorn workers store
11,000 events with async and with sync delivery, 0 errors and 0 drops;
every read command, ``check`` and ``prune`` work through it; the writer's
``SET LOCAL`` timeouts hold (a locked table costs a request one deadline at
most, the breaker opens and closes again); PgBouncer restarted under load
costs requests nothing, the events it cost are counted, and writing resumes.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import statistics
import time
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_gunicorn import Gunicorn, _assert_exact, _total

from conftest import MakeApp, require_backend, server_url
from fault_app import add_event_view, get, serve
from flask_telemetry import ConfigVars, EventType
from pgbouncer_support import PgBouncer, pgbouncer

pytestmark = pytest.mark.slow

#: What telemetry needs from the engine behind PgBouncer in transaction mode.
PGBOUNCER_ENGINE = {"connect_args": {"prepare_threshold": None}}
REQUESTS = 1000
EVENTS_PER_REQUEST = 10


@pytest.fixture
def backend() -> str:
    """PostgreSQL only: PgBouncer is PostgreSQL's pooler."""
    require_backend("postgresql")
    return "postgresql"


@pytest.fixture(scope="module")
def bouncer() -> t.Iterator[PgBouncer]:
    url = server_url("postgresql")
    if url is None:
        pytest.skip("TELEMETRY_TEST_POSTGRES_URL is not set")
    with pgbouncer(url) as started:
        yield started


def _count(db_url: str, sql: str) -> int:
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        value = conn.exec_driver_sql(sql).scalar()
    engine.dispose()
    return int(value or 0)


@pytest.mark.parametrize("delivery", ["async", "sync"])
def test_gunicorn_workers_store_every_event_through_pgbouncer(
    make_app: MakeApp,
    db_url: str,
    bouncer: PgBouncer,
    delivery: str,
    tmp_path: Path,
) -> None:
    """11,000 events from 4 gunicorn workers, each through PgBouncer; then
    every read command, check and prune through it too."""
    direct = make_app()  # creates telemetry_traces, directly
    through = bouncer.url_for(db_url)
    server = Gunicorn(
        through,
        {
            ConfigVars.DELIVERY: delivery,
            ConfigVars.FLUSH_INTERVAL: 0.1,
            ConfigVars.SHUTDOWN_TIMEOUT: 20.0,
            "SQLALCHEMY_ENGINE_OPTIONS": PGBOUNCER_ENGINE,
        },
        tmp_path,
    )
    server.url += f"?n={EVENTS_PER_REQUEST}"
    try:
        started = time.monotonic()
        result = server.load(REQUESTS)
        took = time.monotonic() - started
        assert result["statuses"] == {"201": REQUESTS}
        server.terminate()
    finally:
        server.kill()
    assert server.proc.returncode == 0, server.log.read_text()
    workers = server.worker_stats()
    assert len(workers) >= 2, "the load reached a single worker"
    for stats in workers:
        _assert_exact(stats)
    total = _total(workers)
    # Each request's events and its end, and the end of the readiness probe.
    expected = REQUESTS * (EVENTS_PER_REQUEST + 1) + 1
    print(
        f"\n{delivery} through PgBouncer: {expected} events from "
        f"{len(workers)} workers in {took:.1f}s; {total}"
    )
    assert total["accepted"] == total["written"] == expected
    assert sum(total["dropped"].values()) == 0
    assert "ERROR" not in server.log.read_text()

    with direct.app.app_context():
        engine = direct.db.engine
        with engine.connect() as conn:
            seqs = collections.Counter(
                (m["seq"], m["i"])
                for (m,) in conn.exec_driver_sql(
                    "SELECT metadata FROM telemetry_traces "
                    "WHERE event_type = 'cache_miss'"
                )
            )
            request_id = conn.exec_driver_sql(
                "SELECT request_id FROM telemetry_traces "
                "WHERE event_type = 'cache_miss' LIMIT 1"
            ).scalar_one()
            old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
            conn.execute(
                sa.text(
                    "INSERT INTO telemetry_traces (actor_type, event_type, "
                    "severity, occurred_at) SELECT 'system', 'cache_hit', 'info', "
                    ":old FROM generate_series(1, 1200)"
                ),
                {"old": old},
            )
            conn.commit()
    assert len(seqs) == REQUESTS * EVENTS_PER_REQUEST
    assert set(seqs.values()) == {1}

    reader = make_app(
        False,
        SQLALCHEMY_DATABASE_URI=through,
        SQLALCHEMY_ENGINE_OPTIONS=PGBOUNCER_ENGINE,
    )
    runner = reader.runner()

    def run(*args: str) -> t.Any:
        outcome = runner.invoke(args=["telemetry", *args])
        assert outcome.exit_code == 0, outcome.output
        return outcome.output

    report = json.loads(run("report", "--since", "1h", "--json"))
    assert "event" in json.dumps(report)
    trace = run("trace", request_id, "--json")
    assert trace.count("cache_miss") == EVENTS_PER_REQUEST
    tail = run("tail", "-n", "5", "--json")
    assert len(tail.strip().splitlines()) >= 1
    checked = run("check")
    assert "a pooler or proxy (PgBouncer?) sits between" in checked
    assert "no server-side prepared statements" in checked
    pruned = json.loads(
        run("prune", "--older-than", "1d", "--batch-size", "500", "--yes", "--json")
    )
    assert pruned["deleted"] == 1200
    assert _count(db_url, "SELECT count(*) FROM telemetry_traces") == expected
    # The writer's and prune's SET LOCAL ended with their transactions: the
    # server connections PgBouncer hands out carry no telemetry setting.
    engine = sa.create_engine(through, **PGBOUNCER_ENGINE)
    with engine.connect() as conn:
        for name in ("lock_timeout", "statement_timeout", "synchronous_commit"):
            shown = conn.exec_driver_sql(f"SHOW {name}").scalar()
            assert shown in ("0", "on"), (name, shown)
    engine.dispose()


def test_check_says_what_fails_through_pgbouncer(
    make_app: MakeApp, db_url: str, bouncer: PgBouncer
) -> None:
    through = bouncer.url_for(db_url)
    default = make_app(SQLALCHEMY_DATABASE_URI=through).runner()
    outcome = default.invoke(args=["telemetry", "check"])
    assert "warn  a pooler or proxy (PgBouncer?) sits between" in outcome.output
    assert "prepare_threshold" in outcome.output
    assert '{"connect_args": {"prepare_threshold": None}}' in outcome.output
    direct = make_app(False).runner().invoke(args=["telemetry", "check"])
    assert direct.exit_code == 0, direct.output
    assert "pooler" not in direct.output


def test_set_local_deadline_and_breaker_through_pgbouncer(
    make_app: MakeApp, db_url: str, bouncer: PgBouncer
) -> None:
    """A table locked by another session: the writer's SET LOCAL lock timeout
    ends each attempt, a sync record() waits one deadline at most, the
    breaker opens, and closes again once the lock is gone."""
    bundle = make_app(
        SQLALCHEMY_DATABASE_URI=bouncer.url_for(db_url),
        SQLALCHEMY_ENGINE_OPTIONS=PGBOUNCER_ENGINE,
        **{
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.LOCK_TIMEOUT_MS: 200,
            ConfigVars.SYNC_DEADLINE_MS: 500,
            ConfigVars.BREAKER_THRESHOLD: 2,
            ConfigVars.BREAKER_COOLDOWN: 0.5,
        },
    )
    telemetry = bundle.telemetry
    locker = sa.create_engine(db_url)
    with bundle.app.app_context():
        telemetry.record(EventType.CACHE_MISS, metadata={"at": "before"})
        with locker.connect() as conn:
            conn.exec_driver_sql("LOCK TABLE telemetry_traces IN ACCESS EXCLUSIVE MODE")
            waits = []
            for i in range(6):
                started = time.monotonic()
                telemetry.record(EventType.CACHE_MISS, metadata={"at": i})
                waits.append(time.monotonic() - started)
            locked = telemetry.stats()
            conn.rollback()
        time.sleep(0.6)  # the cool-down: the next record is the probe
        deadline = time.monotonic() + 10
        while telemetry.stats()["written"] < 2 and time.monotonic() < deadline:
            telemetry.record(EventType.CACHE_MISS, metadata={"at": "after"})
            time.sleep(0.1)
        assert telemetry.flush(10)
        stats = telemetry.stats()
    locker.dispose()
    print(f"\nwaits with the table locked: {[round(w, 3) for w in waits]}; {stats}")
    assert max(waits) < 0.5 + 0.3
    assert sum(waits) < 0.5 * 3  # suspect, then open: not one deadline each
    assert locked["written"] == 1
    assert locked["dropped"].get("breaker_open", 0) >= 1
    assert stats["written"] >= 2
    assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())


def _latencies(base: str, prefix: str, count: int) -> list[float]:
    seconds = []
    for i in range(count):
        status, took = get(f"{base}/event?seq={prefix}-{i}")
        assert status == 201
        seconds.append(took)
    return seconds


@pytest.mark.parametrize("delivery", ["async", "sync"])
def test_pgbouncer_restarted_mid_load(
    make_app: MakeApp, db_url: str, bouncer: PgBouncer, delivery: str
) -> None:
    bundle = make_app(
        SQLALCHEMY_DATABASE_URI=bouncer.url_for(db_url),
        SQLALCHEMY_ENGINE_OPTIONS={
            "connect_args": {"prepare_threshold": None, "connect_timeout": 2},
            "pool_pre_ping": True,
        },
        **{
            ConfigVars.DELIVERY: delivery,
            ConfigVars.FLUSH_INTERVAL: 0.05,
            ConfigVars.MAX_RETRIES: 1,
            ConfigVars.RETRY_BACKOFF: 0.05,
            ConfigVars.BREAKER_THRESHOLD: 3,
            ConfigVars.BREAKER_COOLDOWN: 0.5,
        },
    )
    app, telemetry = bundle.app, bundle.telemetry
    add_event_view(app, telemetry)
    with serve(app) as base:
        healthy = _latencies(base, "healthy", 150)
        bouncer.stop()
        try:
            down = _latencies(base, "down", 150)
        finally:
            bouncer.start()
        deadline = time.monotonic() + 20
        stored_after: set[str] = set()
        i = 0
        while not stored_after and time.monotonic() < deadline:
            _latencies(base, f"after{i}", 10)
            with app.app_context():
                telemetry.flush(10)
            stored_after = {
                r._mapping["metadata"]["seq"]
                for r in bundle.rows()
                if r._mapping["metadata"]
                and str(r._mapping["metadata"].get("seq", "")).startswith("after")
            }
            i += 1
        with app.app_context():
            telemetry.flush(30)
            stats = telemetry.stats()
    ratio = statistics.median(down) / statistics.median(healthy)
    print(
        f"\n{delivery}: median request {statistics.median(healthy) * 1000:.2f} ms "
        f"healthy, {statistics.median(down) * 1000:.2f} ms with PgBouncer down "
        f"(ratio {ratio:.2f}, worst {max(down) * 1000:.1f} ms); {stats}"
    )
    assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())
    assert stored_after, "nothing recorded after the restart was stored"
    assert ratio < 3 or statistics.median(down) < statistics.median(healthy) + 0.004
    assert max(down) < 2.0
    assert stats["written"] >= 150 + len(stored_after)
    assert sum(stats["dropped"].values()) >= 1
