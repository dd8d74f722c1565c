"""What the driver paths store is what the model's column types would store.

The writer binds rows on the driver (sqlite3 multi-row INSERTs, PyMySQL's
multi-row INSERTs rendered with its own escaping, psycopg COPY) instead of
through SQLAlchemy's types: the rows must read back
through the model exactly, and the metadata must take the bytes the privacy
settings' size limit counted, on every backend.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import typing as t
import zoneinfo

import pytest
import sqlalchemy as sa

from conftest import Bundle, MakeApp
from flask_telemetry import EventType
from flask_telemetry.storage.dialects import _utc_text
from flask_telemetry.storage.row import FIELDS, TraceEvent
from flask_telemetry.storage.writer import TraceWriter

UNICODE = {
    "text": "Zoë ✓ 日本語 🚀 " * 40,
    "quote": 'a "quoted" \\ back\tslash\nline',
    "nested": {"ü": [1, 2.5, None, True, False, "ß"]},
    "big": 2**62,
}


def _model_rows(bundle: Bundle) -> list[t.Any]:
    """Every stored row, read through the model (its attributes and types)."""
    model = bundle.telemetry.trace_model
    with bundle.app.app_context():
        bundle.telemetry.flush(10)
        rows = list(bundle.db.session.scalars(sa.select(model).order_by(model.id)))
        bundle.db.session.expunge_all()
        return rows


def _stored_bytes(bundle: Bundle) -> list[int | None]:
    """The byte size of each row's metadata as the database holds it."""
    with bundle.app.app_context(), bundle.db.engine.connect() as conn:
        name = conn.dialect.name
        if name == "postgresql":
            sql = "SELECT octet_length(metadata::text) FROM telemetry_traces"
        elif name == "sqlite":
            sql = "SELECT length(CAST(metadata AS BLOB)) FROM telemetry_traces"
        else:
            sql = "SELECT OCTET_LENGTH(metadata) FROM telemetry_traces"
        result = conn.exec_driver_sql(sql + " ORDER BY id")
        return [None if n is None else int(n) for (n,) in result]


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_metadata_limit_is_the_size_stored(make_app: MakeApp, delivery: str) -> None:
    exact = len(json.dumps(UNICODE, ensure_ascii=False).encode())
    bundle = make_app(TELEMETRY_DELIVERY=delivery, TELEMETRY_METADATA_MAX_BYTES=exact)
    with bundle.app.app_context():
        bundle.telemetry.record(EventType.CACHE_MISS, metadata=UNICODE)
        bundle.telemetry.record(EventType.CACHE_HIT, metadata={**UNICODE, "x": 1})
    kept, cut = _model_rows(bundle)
    assert kept.metadata_ == UNICODE  # exactly at the limit: kept
    assert cut.metadata_["metadata_truncated"] is True  # one byte over... and more
    # The copy stops as soon as the limit is passed: a lower bound.
    assert exact < cut.metadata_["original_bytes_at_least"] <= exact + len(', "x": 1')
    assert _stored_bytes(bundle)[0] == exact


def test_driver_rows_read_back_through_the_model(bundle: Bundle) -> None:
    """A batch (the driver path) with aware times in other zones, a time on
    a whole second, NULLs and non-ASCII text reads back as the values given."""
    with bundle.app.app_context():
        engine = bundle.db.engines[None]
    writer = TraceWriter(lambda: engine, bundle.traces)
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    times = [
        dt.datetime(2026, 11, 26, 6, 7, 8, 123456, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 26, 11, 37, 8, 0, tzinfo=india),
        dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    ]
    events = [
        TraceEvent(
            actor_type="user",
            actor_id=-(2**63) if i == 0 else None,
            event_type="cache_miss",
            severity="info",
            request_id=f"req-{i}",
            route_name="héllo.wörld" if i == 1 else None,
            ip_address="127.0.0.1",
            user_agent="Café/1.0 ✓" if i == 2 else None,
            metadata=UNICODE if i != 1 else None,
            occurred_at=when,
        )
        for i, when in enumerate(times)
    ]
    rows, rejected = writer.validate(events)
    assert not rejected
    writer.insert(rows)
    stored = _model_rows(bundle)
    assert len(stored) == 3
    for event, row in zip(events, stored, strict=True):
        occurred = row.occurred_at
        if occurred.tzinfo is None:  # DATETIME columns hold UTC
            occurred = occurred.replace(tzinfo=dt.UTC)
        assert occurred == event.occurred_at
        assert row.metadata_ == event.metadata
        for name in ("actor_id", "request_id", "route_name", "user_agent"):
            assert getattr(row, name) == getattr(event, name)
    sizes = _stored_bytes(bundle)
    assert sizes[0] == len(json.dumps(UNICODE, ensure_ascii=False).encode())


def test_time_text_is_isoformat_of_the_utc_time() -> None:
    """The text rows' occurred_at (SQLite, MariaDB) is isoformat's text of
    the UTC time, whatever the zone, the microseconds and the cache of
    seconds (here two seconds, so that it is forgotten again and again)."""
    text = _utc_text(kept=2)
    zones = [
        dt.UTC,
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(dt.timedelta(hours=-9, minutes=-45)),
        zoneinfo.ZoneInfo("Europe/Paris"),
        zoneinfo.ZoneInfo("UTC"),
    ]
    rng = random.Random(7)
    times = [
        dt.datetime(1, 1, 1, 12, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(999, 3, 4, 5, 6, 7, 8, tzinfo=dt.UTC),
        dt.datetime(2026, 10, 25, 0, 59, 59, 999999, tzinfo=dt.UTC),  # Paris DST
        dt.datetime(2026, 10, 25, 1, 0, 0, 0, tzinfo=dt.UTC),
    ]
    for _ in range(400):  # runs of rows within a few seconds, as a batch has
        base = 1_700_000_000 + rng.randrange(4) + rng.randrange(2) * 86_400 * 400
        when = dt.datetime.fromtimestamp(base + rng.random(), dt.UTC)
        times.append(when.replace(microsecond=rng.choice([0, 1, 999_999, 500_000])))
        times.append(when)
    for when in times:
        for zone in zones:
            try:
                local = when.astimezone(zone)
            except OverflowError:  # year 1 or 9999 seen from another zone
                continue
            expected = when.isoformat(" ", "microseconds")[:26]
            assert text(local) == expected, (local, expected)


#: Text that a hand-made SQL literal would get wrong.
HOSTILE = (
    "it's",
    'say "hi"',
    "back\\slash",
    "\\'",
    "\\\\'",
    "\\",
    "'",
    "''",
    "nul\x00byte",
    "%s",
    "%(x)s",
    "%%",
    "line\nbreak\r\ttab\x1a",
    "ü 日本語 🚀",
    "-- comment",
    "/* open",
    "*/",
    "; DROP TABLE telemetry_traces; --",
    "'); DELETE FROM telemetry_traces; --",
)


def _hostile_events(backend: str) -> list[TraceEvent]:
    """One event per hostile text in every free-text column and in the
    metadata (as a key and a value), one with each column at its length
    limit, and one with every nullable column None."""
    texts = [h for h in HOSTILE if backend != "postgresql" or "\x00" not in h]
    pool = "".join(texts)

    def fill(size: int) -> str:
        return (pool * (size // len(pool) + 1))[:size]

    def event(text: str, size: int | None = None, **changes: t.Any) -> TraceEvent:
        values: dict[str, t.Any] = {
            "actor_type": "user",
            "actor_id": 42,
            "event_type": fill(64) if size else text,
            "severity": "error",
            "request_id": fill(64) if size else text,
            "route_name": fill(255) if size else text,
            "ip_address": fill(45) if size else text,
            "user_agent": fill(512) if size else text,
            "metadata": {"text": text, text: [text, None, 1], "all": texts},
            "occurred_at": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        }
        values.update(changes)
        return TraceEvent(**values)

    events = [event(text) for text in texts]
    events.append(event("", size=1))
    events.append(
        event(
            "none",
            actor_id=None,
            request_id=None,
            route_name=None,
            ip_address=None,
            user_agent=None,
            metadata=None,
        )
    )
    return events


def _assert_read_back(bundle: Bundle, events: list[TraceEvent]) -> None:
    stored = _model_rows(bundle)
    assert len(stored) == len(events)
    for event, row in zip(events, stored, strict=True):
        assert FIELDS[-2:] == ("metadata", "occurred_at")
        for name in FIELDS[:-2]:
            assert getattr(row, name) == getattr(event, name), name
        assert row.metadata_ == event.metadata
        assert row.occurred_at.replace(tzinfo=dt.UTC) == event.occurred_at


def _hostile_writer(engine: sa.Engine, bundle: Bundle, backend: str) -> TraceWriter:
    types = {e.event_type for e in _hostile_events(backend)}
    return TraceWriter(lambda: engine, bundle.traces, event_types=types)


def _round_trip(engine: sa.Engine, bundle: Bundle, backend: str) -> None:
    """Store the hostile events through ``engine`` (an engine of the test's
    own, disposed after) and read them back through the model."""
    events = _hostile_events(backend)
    try:
        writer = _hostile_writer(engine, bundle, backend)
        rows, rejected = writer.validate(events)
        assert not rejected
        writer.insert(rows)
    finally:
        engine.dispose()
    _assert_read_back(bundle, events)


def test_hostile_values_round_trip(bundle: Bundle, backend: str) -> None:
    """Quotes, backslashes, NUL (not on PostgreSQL, which refuses it), ``%``
    placeholders, line breaks, non-ASCII and SQL comment markers, in every
    free-text column and in the metadata, read back as they were given; so
    do values at the columns' length limits and None."""
    with bundle.app.app_context():
        engine = bundle.db.engine
    writer = _hostile_writer(engine, bundle, backend)
    events = _hostile_events(backend)
    rows, rejected = writer.validate(events)
    assert not rejected
    writer.insert(rows)
    _assert_read_back(bundle, events)


def test_hostile_values_round_trip_without_backslash_escapes(
    bundle: Bundle, backend: str
) -> None:
    """In a session whose sql_mode has NO_BACKSLASH_ESCAPES (a backslash is
    an ordinary character in a string literal) the same values round-trip."""
    if backend != "mariadb":
        pytest.skip("NO_BACKSLASH_ESCAPES is an sql_mode of MySQL and MariaDB")
    with bundle.app.app_context():
        url = bundle.db.engine.url
    mode = "CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'NO_BACKSLASH_ESCAPES')"
    engine = sa.create_engine(
        url, connect_args={"init_command": f"SET SESSION sql_mode = {mode}"}
    )
    with engine.connect() as conn:
        (sql_mode,) = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").one()
    assert "NO_BACKSLASH_ESCAPES" in sql_mode.split(",")
    _round_trip(engine, bundle, backend)


class _Wrapped:
    """A DBAPI connection behind an application's own class (a ``creator``
    that wraps PyMySQL's connection, say): everything is PyMySQL's."""

    def __init__(self, inner: t.Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._inner, name)


def test_a_wrapped_pymysql_connection_gets_its_executemany(
    bundle: Bundle, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer renders INSERTs only on PyMySQL's own connection class; on
    any other it leaves the rows to the driver's executemany, and the
    hostile values round-trip all the same."""
    if backend != "mariadb":
        pytest.skip("the rendered INSERT is PyMySQL's path")
    import pymysql

    from flask_telemetry.storage import bulk

    def rendered(*args: t.Any) -> None:
        raise AssertionError("rendered on a connection that is not PyMySQL's")

    monkeypatch.setattr(bulk, "_pymysql_insert", rendered)
    with bundle.app.app_context():
        url = bundle.db.engine.url
    plain = sa.create_engine(url)
    cargs, cparams = plain.dialect.create_connect_args(url)
    plain.dispose()
    engine = sa.create_engine(
        url, creator=lambda: _Wrapped(pymysql.connect(*cargs, **cparams))
    )
    _round_trip(engine, bundle, backend)


def test_a_batch_bigger_than_a_statement_is_stored_whole(
    bundle: Bundle, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """500 rows of about 8 KiB of metadata each: on MariaDB more than one
    statement (PyMySQL's statement size, 1,024,000 bytes), every row stored."""
    sent: list[int] = []
    if backend == "mariadb":
        import pymysql.cursors

        execute = pymysql.cursors.Cursor.execute

        def counted(self: t.Any, query: t.Any, args: t.Any = None) -> t.Any:
            if isinstance(query, (bytes, bytearray)) and query[:7] == b"INSERT ":
                sent.append(len(query))
            return execute(self, query, args)

        monkeypatch.setattr(pymysql.cursors.Cursor, "execute", counted)
    with bundle.app.app_context():
        engine = bundle.db.engine
    writer = TraceWriter(lambda: engine, bundle.traces)
    events = [
        TraceEvent(
            actor_type="user",
            actor_id=n,
            event_type="cache_miss",
            severity="info",
            request_id=f"req-{n}",
            metadata={"n": n, "blob": f"{n}'\\\"ü" * 1600},
            occurred_at=dt.datetime(2026, 1, 2, 3, 4, 5, n, tzinfo=dt.UTC),
        )
        for n in range(500)
    ]
    rows, rejected = writer.validate(events)
    assert not rejected
    writer.insert(rows)
    _assert_read_back(bundle, events)
    if backend == "mariadb":
        assert len(sent) >= 4
        assert max(sent) <= 1_024_000


@pytest.mark.parametrize("no_backslash_escapes", [False, True])
def test_pymysql_statements_are_those_of_its_executemany(
    bundle: Bundle, backend: str, no_backslash_escapes: bool
) -> None:
    """On PyMySQL the writer renders the multi-row INSERTs itself: they are
    byte for byte those PyMySQL's executemany makes of the same rows, split
    at the same places, in either escaping mode of the session."""
    if backend != "mariadb":
        pytest.skip("the rendered INSERT is PyMySQL's path")
    import pymysql.cursors
    from pymysql.constants.SERVER_STATUS import (
        SERVER_STATUS_NO_BACKSLASH_ESCAPES as NO_BACKSLASH_ESCAPES,
    )

    sent: list[bytes] = []

    class Recording(pymysql.cursors.Cursor):  # type: ignore[misc]
        """Keeps the INSERTs instead of sending them; a small statement size."""

        max_stmt_length = 4096

        def execute(self, query: t.Any, args: t.Any = None) -> int:
            if isinstance(query, (bytes, bytearray)) and query[:7] == b"INSERT ":
                sent.append(bytes(query))
                return 0
            return int(super().execute(query, args))

    with bundle.app.app_context():
        url = bundle.db.engine.url
    connect_args: dict[str, t.Any] = {"cursorclass": Recording}
    if no_backslash_escapes:
        mode = "CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'NO_BACKSLASH_ESCAPES')"
        connect_args["init_command"] = f"SET SESSION sql_mode = {mode}"
    engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.StaticPool)
    try:
        writer = _hostile_writer(engine, bundle, backend)
        rows, rejected = writer.validate(_hostile_events(backend) * 3)
        assert not rejected
        writer.insert(rows)
        ours, sent[:] = sent[:], []
        compiled = bundle.traces.insert().compile(
            dialect=engine.dialect, column_keys=list(FIELDS)
        )
        sql = re.sub(r"%\((\w+)\)s", "%s", str(compiled))
        with engine.connect() as conn:
            dbapi: t.Any = conn.connection.dbapi_connection
            escapes = not dbapi.server_status & NO_BACKSLASH_ESCAPES
            assert escapes is not no_backslash_escapes
            dbapi.cursor().executemany(sql, rows)
            conn.rollback()
    finally:
        engine.dispose()
    assert len(sent) > 2
    assert ours == sent
