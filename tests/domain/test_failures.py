"""A storage failure in any form never reaches the view; it is counted."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from conftest import Bundle, MakeApp
from flask_telemetry import EventType, Severity
from flask_telemetry.domain.delivery.batch import BatchStore, Outcome
from flask_telemetry.domain.delivery.stats import Stats
from flask_telemetry.domain.log import RateLimitedLog
from flask_telemetry.storage.row import TraceEvent
from flask_telemetry.storage.writer import TraceWriter

UNREACHABLE = {
    "sqlite": "sqlite:////nonexistent-directory/telemetry.db",
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:9/none?connect_timeout=2",
    "mariadb": "mysql+pymysql://root@127.0.0.1:9/none?connect_timeout=2",
}
FAST_FAIL = {"TELEMETRY_MAX_RETRIES": 0, "TELEMETRY_RETRY_BACKOFF": 0.0}


def _view_records(bundle: Bundle, **metadata: object) -> None:
    @bundle.app.get("/view")
    def view() -> tuple[str, int]:
        bundle.telemetry.record(EventType.EXTERNAL_CALL_FAIL, metadata=metadata)
        return "the view's own answer", 202


def _assert_view_answered_and_counted(bundle: Bundle, requests: int = 3) -> None:
    client = bundle.client()
    for _ in range(requests):
        response = client.get("/view")
        assert response.status_code == 202
        assert response.text == "the view's own answer"
    with bundle.app.app_context():
        bundle.telemetry.flush(10)
        stats = bundle.telemetry.stats()
    lost = stats["dropped"]["storage_error"] + stats["dropped"]["breaker_open"]
    assert lost == 2 * requests
    assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_table_dropped(make_app: MakeApp, delivery: str) -> None:
    bundle = make_app(False, TELEMETRY_DELIVERY=delivery, **FAST_FAIL)
    _view_records(bundle)
    _assert_view_answered_and_counted(bundle)


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_server_unreachable(make_app: MakeApp, backend: str, delivery: str) -> None:
    bundle = make_app(
        TELEMETRY_DELIVERY=delivery,
        TELEMETRY_BIND_KEY="telemetry",
        SQLALCHEMY_BINDS={"telemetry": UNREACHABLE[backend]},
        unreachable_binds={"telemetry"},
        **FAST_FAIL,
    )
    _view_records(bundle)
    _assert_view_answered_and_counted(bundle)


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_value_the_database_rejects(make_app: MakeApp, delivery: str) -> None:
    """A CHECK constraint added by the operator refuses some rows: those are
    dropped and counted, the other rows are stored."""
    bundle = make_app(TELEMETRY_DELIVERY=delivery, **FAST_FAIL)

    @bundle.app.get("/view")
    def view() -> str:
        bundle.telemetry.record(EventType.SYSTEM_EXCEPTION, Severity.CRITICAL)
        bundle.telemetry.record(EventType.SYSTEM_EXCEPTION, Severity.ERROR)
        return "fine"

    with bundle.check_constraint("no_critical", "severity <> 'critical'"):
        assert bundle.client().get("/view").text == "fine"
        rows = bundle.rows()
        assert [(r.event_type, r.severity) for r in rows] == [
            ("system_exception", "error"),
            ("http_request_end", "info"),
        ]
        assert bundle.telemetry.stats()["dropped"]["storage_error"] == 1


def test_nul_byte_on_postgresql_costs_only_its_row(
    bundle: Bundle, backend: str
) -> None:
    """PostgreSQL refuses NUL in text: a batch with one such row keeps the rest."""
    if backend != "postgresql":
        pytest.skip("only PostgreSQL refuses NUL bytes in text")
    with bundle.app.app_context():
        engine = bundle.db.engine
    writer = TraceWriter(lambda: engine, bundle.traces)
    stats = Stats()
    store = BatchStore(writer, stats, RateLimitedLog())
    events = [
        _event(user_agent="ok 1"),
        _event(user_agent="bad \x00 agent"),
        _event(user_agent="ok 2"),
    ]
    outcome = Outcome()
    store.insert(store.validate(events, outcome), outcome)
    store.count(outcome)
    assert sorted(r.user_agent for r in bundle.rows()) == ["ok 1", "ok 2"]
    assert stats.snapshot()["dropped"]["storage_error"] == 1
    assert stats.snapshot()["written"] == 2


def test_nul_byte_in_a_request_never_reaches_the_view(bundle: Bundle) -> None:
    @bundle.app.get("/view")
    def view() -> str:
        bundle.telemetry.record(EventType.CACHE_MISS, metadata={"key": "a\x00b"})
        return "fine"

    response = bundle.client().get("/view", headers={"User-Agent": "evil\x00agent"})
    assert response.text == "fine"
    rows = bundle.rows()
    assert all("\x00" not in (r.user_agent or "") for r in rows)
    stats = bundle.telemetry.stats()
    assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())


def _event(**changes: object) -> TraceEvent:
    import datetime as dt

    values: dict[str, object] = {
        "actor_type": "system",
        "event_type": "cache_miss",
        "severity": "info",
        "occurred_at": dt.datetime.now(dt.UTC),
    }
    values.update(changes)
    return TraceEvent(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_connection_closed_by_the_server(
    make_app: MakeApp, backend: str, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Telemetry sends its BEGIN on the driver's connection itself: a pooled
    connection the server closed meanwhile costs one event (storage_error)
    and counts as the database failing (the breaker, at threshold 1, opens),
    not as a bad row; it leaves the pool, and after the cool-down the next
    event is written on a fresh connection. Connections go back to the pool
    out of autocommit and idle."""
    assert backend == "postgresql"
    bundle = make_app(TELEMETRY_BREAKER_THRESHOLD=1, TELEMETRY_BREAKER_COOLDOWN=0.2)
    telemetry = bundle.telemetry
    admin = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with bundle.app.app_context():
            # Telemetry's own engine (a pool of its own beside the app's).
            engine = telemetry.delivery.store.writer.engine  # type: ignore[attr-defined]
            telemetry.record(EventType.CACHE_MISS)
            with admin.connect() as conn:
                killed = conn.exec_driver_sql(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).scalar()
            assert killed
            telemetry.record(EventType.CACHE_MISS)
            assert telemetry.stats()["breaker"] == "open"
            time.sleep(0.3)
            telemetry.record(EventType.CACHE_HIT)
            stats = telemetry.stats()
            raw = engine.raw_connection()
            try:
                driver = raw.driver_connection
                assert driver is not None
                assert driver.autocommit is False
                assert driver.info.transaction_status == 0  # idle
            finally:
                raw.close()
    finally:
        admin.dispose()
        with bundle.app.app_context():
            bundle.db.engine.dispose()  # the app's own, killed connections
    assert stats["dropped"]["storage_error"] == 1
    assert stats["written"] == 2
    assert [r.event_type for r in bundle.rows()] == ["cache_miss", "cache_hit"]
    # The dead connection was invalidated when it failed, not found broken
    # by the pool's reset on its return (which SQLAlchemy logs as an error).
    assert not [r for r in caplog.records if r.name.startswith("sqlalchemy.pool")]
