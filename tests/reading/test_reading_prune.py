"""prune: exactly the expired rows, in batches, beside a busy writer."""

from __future__ import annotations

import datetime as dt
import pathlib
import threading
import time

import pytest
import sqlalchemy as sa

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


def test_prune_beside_a_busy_writer(make_app: MakeApp) -> None:
    """The writer goes on storing while prune deletes: nothing is dropped and
    no insert waits anywhere near its lock timeout."""
    bundle = make_app(**{ConfigVars.DELIVERY: "sync", ConfigVars.MAX_RETRIES: 0})
    expired = NOW - dt.timedelta(days=30)
    store(
        bundle,
        [
            event(occurred_at=expired + dt.timedelta(milliseconds=i))
            for i in range(20_000)
        ],
    )
    done = threading.Event()
    waits: list[float] = []

    def write() -> None:
        with bundle.app.app_context():
            while not done.is_set():
                started = time.perf_counter()
                bundle.telemetry.record("cache_hit", metadata={"n": len(waits)})
                waits.append(time.perf_counter() - started)
                time.sleep(0.001)  # a busy application, not a flood

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.1)
        result = prune(engine_of(bundle), bundle.traces, cutoff=NOW, batch_size=500)
        during = len(waits)
        time.sleep(0.1)
    finally:
        done.set()
        writer.join(30)
    assert result.deleted == 20_000
    assert result.batches == 41
    assert during > 50  # the writer did run while prune deleted
    with bundle.app.app_context():
        stats = bundle.telemetry.stats()
    assert stats["dropped"] == dict.fromkeys(stats["dropped"], 0)
    assert stats["written"] == len(waits)
    rows = bundle.rows()
    assert len(rows) == len(waits)
    assert {r.event_type for r in rows} == {"cache_hit"}
    assert max(waits) < 0.5  # TELEMETRY_LOCK_TIMEOUT_MS


PARTITIONING = pathlib.Path(__file__).parents[2] / "docs/examples/partitioning.sql"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_prune_drops_expired_partitions(make_app: MakeApp) -> None:
    bundle = make_app(False)
    engine = engine_of(bundle)
    with engine.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        dbapi.execute(PARTITIONING.read_text())
        dbapi.execute(
            "SELECT telemetry_traces_add_partition("
            "(now() AT TIME ZONE 'UTC')::date - n) FROM generate_series(1, 10) AS n"
        )
        dbapi.commit()
    today = dt.datetime.combine(NOW.date(), dt.time(), tzinfo=dt.UTC)
    store(
        bundle,
        [
            event(
                metadata={"day": d, "i": i},
                occurred_at=today - dt.timedelta(days=d, hours=-i),
            )
            for d in range(11)
            for i in range(0, 24, 4)
        ],
    )
    # Mid-day, five days ago: days 6 to 10 wholly expired, day 5 straddles.
    cutoff = today - dt.timedelta(days=5) + dt.timedelta(hours=10)
    table = bundle.traces
    dry = prune(engine, table, cutoff=cutoff, dry_run=True)
    assert dry.partitions_dropped == 5
    assert dry.deleted == 5 * 6 + 3
    result = prune(engine, table, cutoff=cutoff, batch_size=2)
    assert result.partitions_dropped == 5
    assert result.partition_names == tuple(
        f"telemetry_traces_{today - dt.timedelta(days=d):%Y%m%d}"
        for d in range(10, 5, -1)
    )  # oldest first
    assert result.deleted == 5 * 6 + 3
    assert result.batches == 2  # 2 rows, then 1: the straddling day only
    left = {(r.metadata["day"], r.metadata["i"]) for r in bundle.rows()}
    assert left == {(d, i) for d in range(5) for i in range(0, 24, 4)} | {
        (5, 12),
        (5, 16),
        (5, 20),
    }
    with engine.connect() as conn:
        parts = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_inherits "
                "WHERE inhparent = 'telemetry_traces'::regclass"
            )
        ).scalar()
    assert parts == 1 + 3 + 5  # default, today and two ahead, days 1 to 5
