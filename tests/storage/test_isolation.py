"""Telemetry never touches the application's transaction, and writes one table."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa

from conftest import Bundle, MakeApp
from flask_telemetry import EventType


@pytest.mark.parametrize("delivery", ["sync", "async"])
@pytest.mark.parametrize("ending", ["raise", "rollback"])
def test_app_rollback_keeps_telemetry(
    make_app: MakeApp, delivery: str, ending: str
) -> None:
    bundle = make_app(TELEMETRY_DELIVERY=delivery)
    app, db = bundle.app, bundle.db

    @app.post("/work")
    def work() -> str:
        db.session.add(bundle.note(body="never committed"))
        bundle.telemetry.record(EventType.RESOURCE_MUTATION)
        if ending == "raise":
            raise RuntimeError("view failed")
        db.session.rollback()
        return "rolled back"

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = bundle.client().post("/work")
    assert response.status_code == (500 if ending == "raise" else 200)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(bundle.note.id))) == 0
    events = [r.event_type for r in bundle.rows()]
    assert events == ["resource_mutation", "http_request_end"]


def test_app_flushed_rows_do_not_block_or_leak(make_app: MakeApp, backend: str) -> None:
    """On servers, telemetry inserts beside the app's open transaction and
    neither sees the other's outcome."""
    if backend == "sqlite":
        pytest.skip("SQLite has one writer at a time: covered in test_sqlite.py")
    bundle = make_app()
    app, db = bundle.app, bundle.db

    @app.post("/work")
    def work() -> str:
        db.session.add(bundle.note(body="flushed, then rolled back"))
        db.session.flush()
        bundle.telemetry.record(EventType.RESOURCE_MUTATION)
        db.session.rollback()
        return "ok"

    assert bundle.client().post("/work").status_code == 200
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(bundle.note.id))) == 0
    assert next(r.event_type for r in bundle.rows()) == "resource_mutation"


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_telemetry_failure_leaves_session_usable(
    make_app: MakeApp, delivery: str
) -> None:
    bundle = make_app(
        TELEMETRY_DELIVERY=delivery,
        TELEMETRY_MAX_RETRIES=1,
        TELEMETRY_RETRY_BACKOFF=0.01,
    )
    app, db = bundle.app, bundle.db
    with app.app_context():
        bundle.traces.drop(db.engine)

    @app.post("/work")
    def work() -> str:
        db.session.add(bundle.note(body="kept"))
        db.session.flush()
        bundle.telemetry.record(EventType.RESOURCE_MUTATION)
        bundle.telemetry.flush(5)
        db.session.add(bundle.note(body="kept too"))
        db.session.commit()
        return "committed"

    response = bundle.client().post("/work")
    assert response.status_code == 200
    assert response.text == "committed"
    with app.app_context():
        bodies = db.session.scalars(sa.select(bundle.note.body)).all()
        assert sorted(bodies) == ["kept", "kept too"]
        bundle.telemetry.flush(5)
        stats = bundle.telemetry.stats()
    assert stats["dropped"]["storage_error"] == 2  # the event and the request end
    assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_only_telemetry_traces_is_written(
    make_app: MakeApp, delivery: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_app(TELEMETRY_DELIVERY=delivery)
    app = bundle.app
    writes: list[str] = []
    with app.app_context():
        engine = bundle.db.engine
    if engine.dialect.driver == "psycopg":
        # On psycopg the writer sends COPY on the driver's cursor, which
        # SQLAlchemy's events do not see: watch the driver's COPY as well.
        import psycopg

        copy = psycopg.Cursor.copy

        def watch_copy(
            cursor: t.Any, statement: t.Any, *args: t.Any, **kw: t.Any
        ) -> t.Any:
            writes.append(str(statement))
            return copy(cursor, statement, *args, **kw)

        monkeypatch.setattr(psycopg.Cursor, "copy", watch_copy)

    def seen(statement: str) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in {
            "INSERT",
            "UPDATE",
            "DELETE",
            "REPLACE",
            "MERGE",
            "TRUNCATE",
            "COPY",
        }:
            writes.append(statement)

    if engine.dialect.driver == "pymysql":
        # On PyMySQL the writer sends its INSERTs, rendered, on the driver's
        # cursor: watch every statement the driver's cursor runs as well.
        import pymysql.cursors

        execute = pymysql.cursors.Cursor.execute

        def watch_execute(cursor: t.Any, query: t.Any, args: t.Any = None) -> t.Any:
            if isinstance(query, (bytes, bytearray)):
                seen(bytes(query[:200]).decode(errors="replace"))
            else:
                seen(query)
            return execute(cursor, query, args)

        monkeypatch.setattr(pymysql.cursors.Cursor, "execute", watch_execute)

    def watch(
        conn: sa.Connection,
        cursor: t.Any,
        statement: str,
        parameters: t.Any,
        context: t.Any,
        executemany: bool,
    ) -> None:
        seen(statement)

    @app.get("/read")
    def read() -> str:
        bundle.telemetry.record(EventType.CACHE_MISS, metadata={"k": 1})
        bundle.telemetry.record("bogus")  # dropped before storage
        return "ok"

    # Every engine: telemetry writes through a pool (and engine) of its own
    # made from the application's.
    every_engine = sa.engine.Engine
    sa.event.listen(every_engine, "before_cursor_execute", watch)
    try:
        client = bundle.client()
        for _ in range(5):
            assert client.get("/read").status_code == 200
        with app.app_context():
            bundle.telemetry.record(EventType.WORKER_JOB_END)
            assert bundle.telemetry.flush(10)
    finally:
        sa.event.remove(every_engine, "before_cursor_execute", watch)
    assert writes, "the listener saw no write at all"
    for statement in writes:
        words = statement.split()
        assert words[0].upper() in ("INSERT", "COPY")
        target = words[2] if words[0].upper() == "INSERT" else words[1]
        assert target.strip('"`') == "telemetry_traces"
    assert len(bundle.rows()) == 11


def test_rows_written_by_telemetry_only_go_to_its_table(bundle: Bundle) -> None:
    """The writer's INSERT names telemetry_traces and nothing else."""
    statement = str(bundle.traces.insert())
    assert statement.startswith("INSERT INTO telemetry_traces ")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("delivery", ["sync", "async"])
@pytest.mark.parametrize("durable", [False, True, None])
def test_postgresql_commit_durability_is_telemetry_s_own(
    make_app: MakeApp, backend: str, delivery: str, durable: bool | None
) -> None:
    """Telemetry commits durably unless TELEMETRY_DURABLE_COMMIT is False
    (None: the default), then with synchronous_commit off for its own
    transaction only: a trigger sees the setting telemetry's INSERT runs
    under, the view sees its own."""
    assert backend == "postgresql"
    config = {} if durable is None else {"TELEMETRY_DURABLE_COMMIT": durable}
    bundle = make_app(TELEMETRY_DELIVERY=delivery, **config)
    function = f"ft_seen_commit_{delivery}_{str(durable).lower()}"
    with bundle.app.app_context(), bundle.db.engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$ "
            "BEGIN NEW.user_agent := current_setting('synchronous_commit'); "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            f"CREATE TRIGGER {function} BEFORE INSERT ON telemetry_traces "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )

    @bundle.app.get("/view")
    def view() -> str:
        show = sa.text("SHOW synchronous_commit")
        before = bundle.db.session.execute(show).scalar()
        bundle.telemetry.record(EventType.CACHE_MISS)
        after = bundle.db.session.execute(show).scalar()
        return f"{before} {after}"

    try:
        assert bundle.client().get("/view").text == "on on"
        seen = {r.user_agent for r in bundle.rows()}
        assert seen == {"off" if durable is False else "on"}
        assert len(bundle.rows()) == 2  # cache_miss and http_request_end
    finally:
        with bundle.app.app_context(), bundle.db.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}() CASCADE")
