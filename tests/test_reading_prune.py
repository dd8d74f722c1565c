"""prune: exactly the expired rows, in batches, beside a busy writer."""

from __future__ import annotations

import datetime as dt

import pytest

from conftest import Bundle, MakeApp
from flask_telemetry import ConfigVars
from flask_telemetry.reading import PruneResult, prune
from reading_data import NOW, engine_of, event, store


def _ids(bundle: Bundle) -> set[int]:
    return {row.id for row in bundle.rows()}


def test_prune_deletes_exactly_the_expired_rows(bundle: Bundle) -> None:
    cutoff = dt.datetime(2026, 11, 20, 12, 0, 0, tzinfo=dt.UTC)
    micro = dt.timedelta(microseconds=1)
    store(
        bundle,
        [
            event(metadata={"k": "old"}, occurred_at=cutoff - micro * (i + 1))
            for i in range(23)
        ]
        + [
            event(metadata={"k": "keep"}, occurred_at=cutoff),
            event(metadata={"k": "keep"}, occurred_at=cutoff + micro),
            event(metadata={"k": "keep"}, occurred_at=NOW),
        ],
    )
    engine = engine_of(bundle)
    table = bundle.traces
    dry = prune(engine, table, cutoff=cutoff, batch_size=5, dry_run=True)
    assert (dry.deleted, dry.batches, dry.dry_run) == (23, 0, True)
    assert len(bundle.rows()) == 26
    result = prune(engine, table, cutoff=cutoff, batch_size=5)
    assert isinstance(result, PruneResult)
    assert result.deleted == 23
    assert result.batches == 5  # 5+5+5+5+3
    assert result.remaining == 0
    assert result.complete
    assert result.cutoff == cutoff
    assert result.partitions_dropped == 0
    assert [row.metadata["k"] for row in bundle.rows()] == ["keep"] * 3
    again = prune(engine, table, cutoff=cutoff, batch_size=5)
    assert (again.deleted, again.batches) == (0, 1)


def test_max_seconds_stops_between_batches(bundle: Bundle) -> None:
    old = NOW - dt.timedelta(days=30)
    store(bundle, [event(occurred_at=old + dt.timedelta(seconds=i)) for i in range(40)])
    result = prune(
        engine_of(bundle), bundle.traces, cutoff=NOW, batch_size=10, max_seconds=0
    )
    assert (result.deleted, result.batches, result.remaining) == (10, 1, 30)
    assert not result.complete
    assert len(bundle.rows()) == 30


def test_telemetry_prune_uses_the_retention_days(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.RETENTION_DAYS: 14})
    store(
        bundle,
        [
            event(metadata={"age": 15}, occurred_at=NOW - dt.timedelta(days=15)),
            event(metadata={"age": 13}, occurred_at=NOW - dt.timedelta(days=13)),
            event(metadata={"age": 6}, occurred_at=NOW - dt.timedelta(days=6)),
        ],
    )
    with bundle.app.app_context():
        result = bundle.telemetry.prune()
        assert result.deleted == 1
        assert dt.datetime.now(dt.UTC) - result.cutoff == pytest.approx(
            dt.timedelta(days=14), abs=dt.timedelta(seconds=30)
        )
        assert bundle.telemetry.prune(older_than_days=7, dry_run=True).deleted == 1
        assert [r.metadata["age"] for r in bundle.rows()] == [13, 6]
        assert bundle.telemetry.prune(older_than_days=7).deleted == 1
        with pytest.raises(ValueError, match="batch_size"):
            bundle.telemetry.prune(batch_size=0)
    assert [r.metadata["age"] for r in bundle.rows()] == [6]
