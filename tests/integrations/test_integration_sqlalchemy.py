"""Slow queries: db_query_slow from the app's engines, never telemetry's own."""

from __future__ import annotations

import json
import re
import time
import typing as t

import pytest
import sqlalchemy as sa

from conftest import Bundle, MakeApp
from flask_telemetry import ConfigVars, EventType
from flask_telemetry.integrations import sqlalchemy as slow_queries

SECRET = "hunter2-s3cret"
_SLEEPS = re.compile("sleep|fail_after", re.IGNORECASE)


def _sleepy(engine: sa.Engine) -> None:
    """Give SQLite a ``sleep_ms(ms)`` function (servers have their own)."""
    if engine.dialect.name != "sqlite":
        return

    def sleep_ms(ms: int) -> int:
        time.sleep(ms / 1000)
        return ms

    def fail_after_ms(ms: int) -> int:
        time.sleep(ms / 1000)
        raise RuntimeError("gave up")

    @sa.event.listens_for(engine, "connect")
    def register(dbapi: t.Any, record: t.Any) -> None:
        dbapi.create_function("sleep_ms", 1, sleep_ms)
        dbapi.create_function("fail_after_ms", 1, fail_after_ms)

    engine.dispose()  # pooled connections made before lack the function


def slow_select(engine: sa.Engine, ms: int) -> sa.TextClause:
    """A statement that takes ``ms`` and binds SECRET as a parameter."""
    sleep = {
        "sqlite": "sleep_ms(:ms)",
        "postgresql": "pg_sleep(:ms / 1000.0)",
        "mysql": "SLEEP(:ms / 1000.0)",
        "mariadb": "SLEEP(:ms / 1000.0)",
    }[engine.dialect.name]
    return sa.text(
        f"SELECT {sleep}, COUNT(*) FROM notes WHERE body = :body"
    ).bindparams(ms=ms, body=SECRET)


def slow_rows(bundle: Bundle, sleeping: bool = True) -> list[sa.Row[t.Any]]:
    """The db_query_slow rows (of the sleeping statements only, by default:
    on a busy machine any other statement may pass a small threshold)."""
    return [
        r
        for r in bundle.rows()
        if r.event_type == EventType.DB_QUERY_SLOW.value
        and (not sleeping or _SLEEPS.search(r.metadata["statement"]))
    ]


@pytest.fixture
def slow_app(make_app: MakeApp) -> Bundle:
    bundle = make_app(**{ConfigVars.SLOW_QUERY_MS: 150})
    with bundle.app.app_context():
        engine = bundle.db.engine
    _sleepy(engine)

    @bundle.app.get("/slow")
    def slow() -> str:
        bundle.db.session.execute(slow_select(engine, 300)).all()
        bundle.db.session.execute(sa.text("SELECT COUNT(*) FROM notes")).all()
        return "ok"

    slow_queries.instrument(bundle.app, bundle.telemetry)
    assert slow_queries.is_instrumented(bundle.app)
    return bundle


def test_slow_query_recorded_without_its_parameter_values(
    slow_app: Bundle, backend: str
) -> None:
    response = slow_app.client().get("/slow")
    assert response.status_code == 200
    (row,) = slow_rows(slow_app, sleeping=False)  # the fast COUNT(*) is not
    assert row.severity == "warning"
    assert row.request_id == response.headers["X-Request-ID"]
    assert row.route_name == "slow"
    meta = row.metadata
    assert "FROM notes WHERE body =" in meta["statement"]
    assert SECRET not in json.dumps(meta)
    assert "300" not in meta["statement"]  # the sleep's value is a parameter too
    assert 300 <= meta["duration_ms"] < 5000
    assert meta["threshold_ms"] == 150
    assert meta["bind_key"] is None
    assert meta["dialect"] in {"sqlite", "postgresql", "mysql", "mariadb"}


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_telemetrys_own_statements_are_never_recorded(
    make_app: MakeApp, backend: str, delivery: str
) -> None:
    # A threshold of 0: every statement is slow, so each of telemetry's own
    # INSERTs (on the app's own engine here) would be recorded.
    bundle = make_app(**{ConfigVars.SLOW_QUERY_MS: 0, ConfigVars.DELIVERY: delivery})

    @bundle.app.get("/count")
    def count() -> str:
        bundle.db.session.execute(sa.text("SELECT COUNT(*) FROM notes")).all()
        return "ok"

    slow_queries.instrument(bundle.app, bundle.telemetry)
    client = bundle.client()
    for _ in range(3):
        assert client.get("/count").status_code == 200
    rows = bundle.rows()
    slow = [r for r in rows if r.event_type == EventType.DB_QUERY_SLOW.value]
    assert [r.metadata["statement"] for r in slow] == ["SELECT COUNT(*) FROM notes"] * 3
    assert len(rows) == 6  # three slow queries, three request ends
    slow_queries.uninstrument(bundle.app)


def test_every_bind_is_timed_with_its_key(make_app: MakeApp, tmp_path: t.Any) -> None:
    bundle = make_app(
        **{
            ConfigVars.SLOW_QUERY_MS: 150,
            "SQLALCHEMY_BINDS": {"reports": f"sqlite:///{tmp_path / 'reports.db'}"},
        }
    )
    with bundle.app.app_context():
        reports = bundle.db.engines["reports"]
    _sleepy(reports)
    slow_queries.instrument(bundle.app, bundle.telemetry)
    # Outside any app context or request: recorded all the same.
    with reports.connect() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS notes (body TEXT)"))
        conn.execute(slow_select(reports, 250)).all()
    (row,) = slow_rows(bundle)
    assert row.metadata["bind_key"] == "reports"
    assert row.request_id is None
    assert row.actor_type == "system"


def test_instrument_is_idempotent_and_undone(slow_app: Bundle) -> None:
    slow_queries.instrument(slow_app.app, slow_app.telemetry)
    assert slow_queries.is_instrumented(slow_app.app)
    slow_app.client().get("/slow")
    assert len(slow_rows(slow_app)) == 1  # once, not once per instrument()
    slow_queries.uninstrument(slow_app.app)
    slow_queries.uninstrument(slow_app.app)
    with slow_app.app.app_context():
        engine = slow_app.db.engine
    for name in ("before_cursor_execute", "after_cursor_execute"):
        assert len(getattr(engine.dispatch, name)) == 0
    slow_app.client().get("/slow")
    assert len(slow_rows(slow_app)) == 1


def test_long_statements_are_cut(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.SLOW_QUERY_MS: 0})
    slow_queries.instrument(bundle.app, bundle.telemetry, max_statement_chars=40)
    with bundle.app.app_context():
        columns = ", ".join(f"body AS column_{i}" for i in range(50))
        bundle.db.session.execute(sa.text(f"SELECT {columns} FROM notes")).all()
    (row,) = slow_rows(bundle, sleeping=False)
    statement = row.metadata["statement"]
    assert len(statement) == 40
    assert statement == "SELECT body AS column_0, body AS colu..."


def test_off_until_the_key_is_set(make_app: MakeApp) -> None:
    bundle = make_app()
    assert bundle.app.config[ConfigVars.SLOW_QUERY_MS] is None
    with bundle.app.app_context():
        engine = bundle.db.engine
    _sleepy(engine)
    slow_queries.instrument(bundle.app, bundle.telemetry)
    # Statements are counted per request (tests/integrations/test_db_time.py),
    # none is ever slow without the key.
    assert slow_queries.is_instrumented(bundle.app)
    with engine.connect() as conn:
        conn.execute(slow_select(engine, 200)).all()
    assert slow_rows(bundle, sleeping=False) == []
    disabled = make_app(**{ConfigVars.SLOW_QUERY_MS: 10, ConfigVars.ENABLED: False})
    slow_queries.instrument(disabled.app, disabled.telemetry)
    assert not slow_queries.is_instrumented(disabled.app)


@pytest.mark.parametrize("value", [-1, "100", True])
def test_a_bad_threshold_names_the_key(make_app: MakeApp, value: t.Any) -> None:
    # Checked with the rest of the configuration, at init_app ...
    with pytest.raises(ValueError, match=ConfigVars.SLOW_QUERY_MS):
        make_app(**{ConfigVars.SLOW_QUERY_MS: value})
    # ... and again by instrument(), for a value set afterwards.
    bundle = make_app()
    bundle.app.config[ConfigVars.SLOW_QUERY_MS] = value
    with pytest.raises(ValueError, match=ConfigVars.SLOW_QUERY_MS):
        slow_queries.instrument(bundle.app, bundle.telemetry)


def test_a_failing_record_never_reaches_the_query(
    slow_app: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: t.Any, **kwargs: t.Any) -> None:
        raise RuntimeError("recording failed")

    monkeypatch.setattr(slow_app.telemetry, "record", broken)
    assert slow_app.client().get("/slow").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_slow_statement_that_fails_is_recorded_with_its_error(
    make_app: MakeApp,
) -> None:
    bundle = make_app(**{ConfigVars.SLOW_QUERY_MS: 150})
    with bundle.app.app_context():
        engine = bundle.db.engine
        bundle.db.session.add(bundle.note(body="one"))
        bundle.db.session.commit()
    _sleepy(engine)
    slow_queries.instrument(bundle.app, bundle.telemetry)

    @bundle.app.get("/fails")
    def fails() -> str:
        statement = sa.text("SELECT fail_after_ms(:ms) FROM notes WHERE body != :b")
        try:
            bundle.db.session.execute(statement, {"ms": 250, "b": SECRET}).all()
        except sa.exc.OperationalError:
            return "gave up"
        return "done"

    assert bundle.client().get("/fails").text == "gave up"
    (row,) = slow_rows(bundle)
    assert row.metadata["error"] == "OperationalError"
    assert row.metadata["duration_ms"] >= 250
    assert SECRET not in json.dumps(row.metadata)
