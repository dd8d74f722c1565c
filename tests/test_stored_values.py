"""What the driver paths store is what the model's column types would store.

The writer binds rows on the driver (sqlite3 and PyMySQL executemany,
psycopg COPY) instead of through SQLAlchemy's types: the rows must read back
through the model exactly, and the metadata must take the bytes the privacy
settings' size limit counted, on every backend.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import pytest
import sqlalchemy as sa

from conftest import Bundle, MakeApp
from flask_telemetry import EventType
from flask_telemetry.storage.row import TraceEvent
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
