"""Storage: every column round-trips on every backend; failures raise."""

from __future__ import annotations

import copy
import datetime as dt
import typing as t

import marshmallow as ma
import pytest
import sqlalchemy as sa

from conftest import Bundle, MakeApp
from flask_telemetry import ActorType, EventType, Severity, TelemetryStorageException
from flask_telemetry.domain.delivery.batch import BatchStore, Outcome
from flask_telemetry.domain.delivery.stats import Stats
from flask_telemetry.domain.log import RateLimitedLog, driver_noise_muted
from flask_telemetry.storage import row as ev
from flask_telemetry.storage.row import TraceEvent
from flask_telemetry.storage.schema import TelemetryEventSchema
from flask_telemetry.storage.writer import (
    StorageFailure,
    TraceWriter,
    _deserializer,
    _verdict_by_length,
)

NESTED = {
    "service": "billing",
    "attempts": [1, 2, {"backoff_ms": 12.5}],
    "ok": False,
    "none": None,
    "unicode": "Zoë ✓ 日本語 🚀",
    "deep": {"a": {"b": {"c": ["d", {"e": "ü"}]}}},
}
WHEN = dt.datetime(2026, 11, 26, 6, 7, 8, 123456, tzinfo=dt.UTC)


def _event(**changes: object) -> TraceEvent:
    values: dict[str, object] = {
        "actor_type": "user",
        "actor_id": 2**40 + 7,
        "event_type": "external_call_fail",
        "severity": "error",
        "request_id": "req-1:a.b_c",
        "route_name": "billing.charge",
        "ip_address": "2001:db8:85a3:ffff:ffff:8a2e:370:7334",
        "user_agent": "curl/8.5 " + "x" * 503,
        "metadata": NESTED,
        "occurred_at": WHEN,
    }
    values.update(changes)
    return TraceEvent(**values)  # type: ignore[arg-type]


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _write(writer: TraceWriter, event: TraceEvent) -> None:
    """Validate and insert one event, raising for a rejected one."""
    rows, rejected = writer.validate([event])
    if rejected:
        why = rejected[0][1]
        raise StorageFailure(
            f"Invalid telemetry event: {why}", retryable=False, per_row=True
        ) from ValueError(why)
    writer.insert(rows)


@pytest.fixture
def writer(bundle: Bundle) -> TraceWriter:
    """A writer on the test's database (the app's engine, disposed by the app)."""
    with bundle.app.app_context():
        engine = bundle.db.engines[None]
    return TraceWriter(lambda: engine, bundle.traces)


def test_every_column_round_trips(bundle: Bundle, writer: TraceWriter) -> None:
    event = _event()
    _write(writer, event)
    (row,) = bundle.rows()
    assert row.actor_type == "user"
    assert row.actor_id == 2**40 + 7
    assert row.event_type == "external_call_fail"
    assert row.severity == "error"
    assert row.request_id == "req-1:a.b_c"
    assert row.route_name == "billing.charge"
    assert row.ip_address == "2001:db8:85a3:ffff:ffff:8a2e:370:7334"
    assert row.user_agent == event.user_agent
    assert len(row.user_agent) == 512
    assert row.metadata == NESTED
    assert _as_utc(row.occurred_at) == WHEN
    assert _as_utc(row.occurred_at).microsecond == 123456


def test_nulls_round_trip(bundle: Bundle, writer: TraceWriter) -> None:
    _write(
        writer,
        _event(
            actor_id=None,
            request_id=None,
            route_name=None,
            ip_address=None,
            user_agent=None,
            metadata=None,
        ),
    )
    with bundle.app.app_context(), bundle.db.engine.connect() as conn:
        nulls = conn.execute(
            sa.select(sa.func.count()).where(
                bundle.traces.c.metadata.is_(None),
                bundle.traces.c.actor_id.is_(None),
                bundle.traces.c.request_id.is_(None),
                bundle.traces.c.route_name.is_(None),
                bundle.traces.c.ip_address.is_(None),
                bundle.traces.c.user_agent.is_(None),
            )
        ).scalar()
    # SQL NULL, not the JSON literal null, in the metadata column.
    assert nulls == 1


def test_a_batch_round_trips_in_order(bundle: Bundle, writer: TraceWriter) -> None:
    """A batch of an odd size keeps every row and value, in order; on SQLite
    it goes as multi-row INSERTs of a power of two of rows each (37 rows:
    32 + 4 + 1), not one statement per row."""
    events = [
        _event(
            request_id=f"req-{n}",
            metadata={"n": n, "text": "ü" * (n % 5)},
            occurred_at=WHEN + dt.timedelta(microseconds=n),
        )
        for n in range(37)
    ]
    rows, rejected = writer.validate(events)
    assert not rejected
    statements: list[tuple[str, int]] = []

    def seen(conn: t.Any, cursor: t.Any, sql: str, params: t.Any, *_: t.Any) -> None:
        if sql.startswith("INSERT"):
            statements.append((sql, len(params) if not many(params) else 0))

    def many(params: t.Any) -> bool:
        return bool(params) and isinstance(params[0], (tuple, list, dict))

    engine = writer.engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        writer.insert(rows)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    stored = sorted(bundle.rows(), key=lambda r: r.id)
    assert [r.request_id for r in stored] == [f"req-{n}" for n in range(37)]
    assert [r.metadata for r in stored] == [e.metadata for e in events]
    assert [_as_utc(r.occurred_at) for r in stored] == [e.occurred_at for e in events]
    if engine.dialect.name == "sqlite":
        columns = len(ev.FIELDS)
        assert [count // columns for _, count in statements] == [32, 4, 1]
        assert [sql.count("(?, ?") for sql, _ in statements] == [32, 4, 1]


def test_a_row_the_database_rejects_in_a_multi_row_insert_costs_only_itself(
    make_app: MakeApp,
) -> None:
    """A CHECK constraint refuses one row of a batch sent as multi-row
    INSERTs: the batch is split until that row is alone; the others are
    stored."""
    bundle = make_app()
    with bundle.check_constraint("no_bad", "request_id <> 'req-bad'"):
        with bundle.app.app_context():
            engine = bundle.db.engine
        stats = Stats()
        store = BatchStore(
            TraceWriter(lambda: engine, bundle.traces), stats, RateLimitedLog()
        )
        events = [
            _event(request_id="req-bad" if n == 21 else f"req-{n}") for n in range(40)
        ]
        outcome = Outcome()
        with driver_noise_muted():
            store.insert(store.validate(events, outcome), outcome)
        store.count(outcome)
        assert sorted(r.request_id for r in bundle.rows()) == sorted(
            f"req-{n}" for n in range(40) if n != 21
        )
        assert stats.snapshot()["written"] == 39
        assert stats.snapshot()["dropped"]["storage_error"] == 1


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_record_round_trips_through_the_extension(
    make_app: MakeApp, delivery: str
) -> None:
    bundle = make_app(TELEMETRY_DELIVERY=delivery)
    before = dt.datetime.now(dt.UTC)
    with bundle.app.app_context():
        bundle.telemetry.record(
            EventType.EXTERNAL_CALL_FAIL,
            Severity.ERROR,
            metadata=NESTED,
            actor_type=ActorType.SERVICE,
            actor_id=9,
        )
    (row,) = bundle.rows()
    after = dt.datetime.now(dt.UTC)
    assert (row.event_type, row.severity, row.actor_type, row.actor_id) == (
        "external_call_fail",
        "error",
        "service",
        9,
    )
    assert row.metadata == NESTED
    assert row.request_id is None
    assert row.route_name is None
    assert before - dt.timedelta(seconds=1) <= _as_utc(row.occurred_at) <= after
    stats = bundle.telemetry.stats()
    assert stats["accepted"] == stats["written"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"request_id": "r" * 65}, "request_id"),
        ({"ip_address": "1" * 46}, "ip_address"),
        ({"event_type": "no_such_event"}, "event_type"),
        ({"severity": "loud"}, "severity"),
        ({"actor_type": "Robot Overlord"}, "actor_type"),
        ({"actor_id": 2**63}, "actor_id"),
        ({"metadata": {"x": float("nan")}}, "metadata"),
        ({"metadata": {"x": object()}}, "metadata"),
        ({"occurred_at": dt.datetime(2026, 1, 1)}, "occurred_at"),
    ],
)
def test_schema_rejection_raises_storage_exception(
    bundle: Bundle, writer: TraceWriter, change: dict[str, object], field: str
) -> None:
    with pytest.raises(TelemetryStorageException, match=field) as caught:
        _write(writer, _event(**change))
    assert caught.value.__cause__ is not None
    assert bundle.rows() == []


def test_schema_rejects_unknown_fields(bundle: Bundle, writer: TraceWriter) -> None:
    schema = writer.schema
    row = {name: getattr(_event(), name) for name in _event().__slots__}
    errors = schema.validate({**row, "surprise": 1})
    assert "surprise" in errors


def test_database_failure_raises_with_cause(make_app: MakeApp) -> None:
    bundle = make_app(False)  # no table
    with bundle.app.app_context():
        engine = bundle.db.engines[None]
    writer = TraceWriter(lambda: engine, bundle.traces)
    with pytest.raises(TelemetryStorageException) as caught:
        _write(writer, _event())
    assert isinstance(caught.value.__cause__, sa.exc.DBAPIError)


def test_batch_validation_matches_row_by_row(tmp_path: t.Any) -> None:
    """The writer validates repeated columns once per batch and the rest
    column by column: the verdict on every row must be the row-by-row one."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'v.db'}")
    table = sa.Table("telemetry_traces", sa.MetaData())
    writer = TraceWriter(lambda: engine, table)
    bad_changes: list[dict[str, object]] = [
        {"request_id": "r" * 65},
        {"severity": "loud"},
        {"event_type": "no_such_event"},
        {"actor_type": "Robot Overlord"},
        {"actor_id": 2**63},
        {"metadata": {"x": float("nan")}},
        {"metadata": {1: "not a str key"}},
        {"occurred_at": dt.datetime(2026, 1, 1)},
        {"user_agent": "u" * 513, "request_id": "r" * 70},
    ]
    events = []
    for i in range(60):
        change = bad_changes[i % len(bad_changes)] if i % 3 == 0 else {}
        events.append(_event(**{"request_id": f"req-{i}", **change}))
    good, bad = writer.validate(events)
    expected = {
        i
        for i, e in enumerate(events)
        if writer.schema.validate({n: getattr(e, n) for n in e.__slots__})
    }
    assert {id(e) for e, _ in bad} == {id(events[i]) for i in expected}
    assert len(good) + len(bad) == len(events)
    assert len(bad) == 20
    for event, why in bad:
        full = writer.schema.validate({n: getattr(event, n) for n in event.__slots__})
        for field in full:
            assert field in why
    engine.dispose()


def test_request_ids_are_validated_per_length_only_where_the_field_allows(
    tmp_path: t.Any,
) -> None:
    """The schema's request id field judges an exact str by its length: the
    writer asks it once per length in a batch. A field with any other
    validator is asked about every id."""
    schema_field = TelemetryEventSchema().fields["request_id"]
    assert _verdict_by_length(schema_field)
    pattern = ma.fields.String(
        validate=[ma.validate.Length(max=64), ma.validate.Regexp(r"req-\d+")]
    )
    assert not _verdict_by_length(pattern)

    class Custom(ma.fields.String):
        pass

    assert not _verdict_by_length(Custom(validate=ma.validate.Length(max=64)))
    hooked = ma.fields.String(validate=ma.validate.Length(max=64))
    hooked.pre_load = [str.strip]
    assert not _verdict_by_length(hooked)

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'v.db'}")
    writer = TraceWriter(lambda: engine, sa.Table("telemetry_traces", sa.MetaData()))
    calls: list[object] = []
    field = writer._per_row[0]

    def counted(value: object) -> object:
        calls.append(value)
        return field(value)

    writer._per_row = (counted, *writer._per_row[1:])  # type: ignore[assignment]
    ids = [f"req-{n:04d}" for n in range(50)] + ["r" * 64, "r" * 65, "s" * 65, None]
    good, bad = writer.validate([_event(request_id=i) for i in ids])
    assert len(good) == 52
    assert [e.request_id for e, _ in bad] == ["r" * 65, "s" * 65]
    # One call per length (8, 64, 65 rejected twice) and one for None.
    assert calls == ["req-0000", "r" * 64, "r" * 65, "s" * 65, None]
    engine.dispose()


def test_the_writers_field_calls_give_the_fields_verdicts() -> None:
    """The writer calls the metadata and time fields' ``_deserialize``
    directly where ``deserialize`` would do nothing else: same value or same
    message for every kind of input; a field with a validator or a hook is
    called whole."""
    schema = TelemetryEventSchema()
    text = copy.copy(schema.fields["metadata"])
    text.as_text = True  # type: ignore[attr-defined]
    cases: list[tuple[ma.fields.Field[t.Any], list[object]]] = [
        (
            text,
            [
                {"a": 1, "b": "ü"},
                {},
                None,
                ma.missing,
                [],
                "x",
                {1: "a"},
                {"x": float("nan")},
                {"x": object()},
            ],
        ),
        (
            schema.fields["occurred_at"],
            [WHEN, dt.datetime(2026, 1, 1), None, ma.missing, WHEN.isoformat(), 5],
        ),
    ]

    def verdict(call: t.Callable[[object], object], value: object) -> object:
        try:
            return ("ok", call(value))
        except ma.ValidationError as exc:
            return ("error", exc.messages)

    for field, values in cases:
        fast = _deserializer(field)
        assert fast != field.deserialize  # the direct call is in use
        for value in values:
            assert verdict(fast, value) == verdict(field.deserialize, value), value
    checked = ma.fields.String(validate=ma.validate.Length(max=3))
    assert _deserializer(checked) == checked.deserialize
    hooked = ma.fields.String()
    hooked.post_load = [str.upper]
    assert _deserializer(hooked) == hooked.deserialize


def test_validation_verdicts_are_per_value_across_batches(tmp_path: t.Any) -> None:
    """The writer remembers its verdicts on shared values between batches;
    values that compare equal but validate differently (1, 1.0, True) must
    each get their own verdict, in single-event and in batched validation."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'v.db'}")
    table = sa.Table("telemetry_traces", sa.MetaData())
    writer = TraceWriter(lambda: engine, table)
    changes: list[dict[str, object]] = [
        {"actor_id": 1},
        {"actor_id": 1.0},
        {"actor_id": True},
        {"actor_id": 2**63},
        {"severity": "loud"},
        {},
    ]
    rejected = 0
    for _ in range(2):
        for size in (1, 3):
            for change in changes:
                events = [_event(request_id=f"r{i}", **change) for i in range(size)]
                row = {n: getattr(events[0], n) for n in events[0].__slots__}
                invalid = bool(writer.schema.validate(row))
                good, bad = writer.validate(events)
                assert len(bad) == (size if invalid else 0), change
                assert len(good) == (0 if invalid else size), change
                rejected += invalid
    assert rejected >= 8  # 1.0, 2**63 and "loud" at least, each size, twice
    engine.dispose()


def test_single_event_validation_matches_the_schema(tmp_path: t.Any) -> None:
    """One event at a time (sync delivery) is validated field by field: the
    verdict and the fields named must be the whole schema's."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'v.db'}")
    table = sa.Table("telemetry_traces", sa.MetaData())
    writer = TraceWriter(lambda: engine, table)
    changes: list[dict[str, object]] = [
        {},
        {"request_id": "r" * 65},
        {"request_id": 12},
        {"metadata": {"x": float("inf")}},
        {"metadata": {1: "not a str key"}},
        {"metadata": ["not", "a", "dict"]},
        {"occurred_at": dt.datetime(2026, 1, 1)},
        {"occurred_at": "2026-01-01T00:00:00+00:00"},
        {"severity": "loud", "request_id": "r" * 70},
    ]
    for change in changes:
        event = _event(**change)
        good, bad = writer.validate([event])
        full = writer.schema.validate({n: getattr(event, n) for n in event.__slots__})
        assert (len(good), len(bad)) == ((0, 1) if full else (1, 0)), change
        for field in full:
            assert field in bad[0][1], (change, field)
    engine.dispose()


def test_occurred_at_must_be_a_datetime_not_a_string() -> None:
    """The row is inserted as validated: a string that would parse as a
    datetime is refused, not handed to the DATETIME binding."""
    schema = TelemetryEventSchema()
    row = ev.as_row(_event())
    assert schema.validate(row) == {}
    row["occurred_at"] = row["occurred_at"].isoformat()
    assert "occurred_at" in schema.validate(row)
