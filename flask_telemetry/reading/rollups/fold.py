"""Folding: the raw request ends of closed minutes written into
``telemetry_rollups`` as minute, hour and day buckets, and old buckets aged.

The guarantees folding keeps:

- **Exactly once.** A bucket is recomputed whole from the raw rows and
  written with an upsert that replaces it: folding twice, or in two
  processes at once, writes the same row; a run killed midway committed
  nothing (one transaction per hour of buckets).
- **Late rows.** Each run starts again at the hour of the last folded
  minute less the grace period (``TELEMETRY_ROLLUP_GRACE_S``), so a row
  stored up to that late is counted. A row later still is counted when
  ``rollup(since=...)`` re-folds its day.
- **Pruned rows.** A bucket that begins before the oldest raw request end is
  written only when the table has no row for it yet: re-folding a range
  whose raw rows were pruned changes nothing. ``prune`` folds what it is
  about to delete before deleting it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import time
import typing as t

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from ...storage.rollup_model import RELEASE_LENGTH
from .. import _dialects, _window, sketch
from ..events import Bind
from . import raw, stored
from .buckets import (
    DAY,
    DEFAULT_RETENTION,
    EPOCH,
    HOUR,
    LEVELS,
    MINUTE,
    Figures,
    Key,
    Retention,
    floor,
    merged,
)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RollupResult:
    """What :func:`rollup` did."""

    #: The raw rows from ``since`` to ``until`` (aware UTC) were folded.
    since: dt.datetime | None
    until: dt.datetime | None
    #: Raw request ends read.
    rows: int
    #: Rollup rows written (upserted).
    buckets: int
    #: Rollup rows deleted by aging.
    aged: int
    seconds: float

    def as_dict(self) -> dict[str, t.Any]:
        """The fields as a JSON-ready dict (times in ISO 8601)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("since", "until"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data


def rollup(
    bind: Bind,
    traces: sa.Table,
    rollups: sa.Table,
    *,
    since: _window.TimeBound | None = None,
    grace: dt.timedelta = dt.timedelta(minutes=5),
    retention: Retention = DEFAULT_RETENTION,
    now: dt.datetime | None = None,
) -> RollupResult:
    """Fold the closed minutes' request ends into ``rollups``; age old buckets.

    Without ``since``, from the hour of the last folded minute less
    ``grace`` (everything, the first time); with it, from the start of its
    UTC day: a backfill, or a re-fold for rows later than the grace period.
    Idempotent and safe in several processes at once.
    """
    began = time.monotonic()
    now = _window.resolve(now) or dt.datetime.now(dt.UTC)
    end = floor(now, MINUTE)
    if isinstance(bind, sa.Connection):
        raise TypeError("rollup() takes an Engine: it commits as it goes.")
    with bind.connect() as conn:
        oldest = raw.oldest(conn, traces)
        start = _start(conn, rollups, since, grace, oldest)
        conn.rollback()
        rows = buckets = 0
        if start is not None and oldest is not None and start < end:
            at = start
            # This run's hours of the day being folded, for its day bucket.
            hours: dict[Key, Figures] | None = None
            while at < end:
                # One transaction an hour of buckets (a day, past the hours'
                # retention): the writer never waits long for the locks a
                # fold holds, a backfill of months commits as it goes, and
                # a killed run loses one hour's work.
                step = HOUR if at >= now - retention.of(HOUR) else DAY
                stop = min(floor(at, step) + dt.timedelta(seconds=step), end)
                if floor(at, DAY) == at:
                    hours = None

                def fold(
                    at: dt.datetime = at,
                    stop: dt.datetime = stop,
                    hours: dict[Key, Figures] | None = hours,
                ) -> t.Any:
                    found = _fold_range(
                        conn, traces, rollups, at, stop, oldest, now, retention, hours
                    )
                    _set_mark(conn, rollups, stop, now)
                    return found

                n, written, hours = _committed(conn, fold)
                rows += n
                buckets += written
                at = stop
        aged = _committed(conn, lambda: _age(conn, rollups, now, retention))
    folded = start is not None and start < end
    return RollupResult(
        since=start if folded else None,
        until=end if folded else None,
        rows=rows,
        buckets=buckets,
        aged=aged,
        seconds=time.monotonic() - began,
    )


#: Tries of a transaction that met another rollup's locks.
_ATTEMPTS = 8


def _committed(conn: sa.Connection, work: t.Callable[[], t.Any]) -> t.Any:
    """Run ``work`` in a transaction and commit it; again, after a pause,
    when it met the locks of another rollup running at once (SQLite's
    "database is locked", a deadlock elsewhere): its upserts write the same
    rows, so whichever commits first, the result is the same."""
    for attempt in range(_ATTEMPTS):
        try:
            found = work()
            conn.commit()
            return found
        except sa.exc.OperationalError:
            conn.rollback()
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _start(
    conn: sa.Connection,
    rollups: sa.Table,
    since: _window.TimeBound | None,
    grace: dt.timedelta,
    oldest: dt.datetime | None,
) -> dt.datetime | None:
    if since is not None:
        start = _window.resolve(since)
        assert start is not None
        start = floor(start, DAY)
    else:
        mark = stored.folded_until(conn, rollups)
        if mark is None:
            if oldest is None:
                return None
            return floor(oldest, DAY)
        start = floor(mark - grace, HOUR)
    if oldest is not None and start < floor(oldest, DAY):
        start = floor(oldest, DAY)
    return start


def _fold_range(
    conn: sa.Connection,
    traces: sa.Table,
    rollups: sa.Table,
    start: dt.datetime,
    end: dt.datetime,
    oldest: dt.datetime,
    now: dt.datetime,
    retention: Retention,
    before: dict[Key, Figures] | None = None,
) -> tuple[int, int, dict[Key, Figures]]:
    """Fold ``[start, end)`` (within one UTC day, ``start`` on an hour) and
    write its minutes, hours and its day; returns (raw rows, rows written,
    the day's hours up to ``end``). ``before``: the day's hours before
    ``start`` (read from the table when None).

    The raw rows are grouped by the finest level still kept at ``end``
    (hours, or the day, for a range past the minutes' retention): the
    levels not kept would be left unwritten, and fewer, larger groups are
    what makes a backfill of months fast."""
    width = _width(start, end, now, retention)
    grouped = raw.buckets(conn, traces, start, end, width=width)
    minutes, hours = _minutes_and_hours(grouped, width)
    # The day: this range's hours, and those of the day before ``start``
    # as stored (folded by earlier runs).
    earlier = (
        stored.buckets(conn, rollups, HOUR, floor(start, DAY), start)
        if before is None
        else before
    )
    so_far = {**earlier, **hours}
    days = grouped if width == DAY else merged(so_far, DAY)
    written = 0
    for level, found in ((MINUTE, minutes), (HOUR, hours), (DAY, days)):
        kept = _unaged(found, now - retention.of(level))
        if kept:
            keep = _writable(conn, rollups, level, kept, oldest, now)
            written += _upsert(conn, rollups, level, keep, now)
    return sum(f.rows for f in grouped.values()), written, so_far


def _width(
    start: dt.datetime, end: dt.datetime, now: dt.datetime, retention: Retention
) -> int:
    """The level the raw rows of ``[start, end)`` are grouped by: minutes
    while they are kept at ``end``, else hours, else (for a range that
    starts a day, past the hours' retention) the day."""
    if end > now - retention.of(MINUTE):
        return MINUTE
    if end > now - retention.of(HOUR) or floor(start, DAY) != start:
        return HOUR
    return DAY


def _minutes_and_hours(
    grouped: dict[Key, Figures], width: int
) -> tuple[dict[Key, Figures], dict[Key, Figures]]:
    """The minute and the hour buckets of a range grouped by ``width``
    seconds (none of a level finer than ``width``)."""
    if width == MINUTE:
        return grouped, merged(grouped, HOUR)
    if width == HOUR:
        return {}, grouped
    return {}, {}


def _unaged(found: dict[Key, Figures], cutoff: dt.datetime) -> dict[Key, Figures]:
    """``found`` without the buckets begun before ``cutoff``: their level's
    retention has passed, aging would delete them."""
    if found and min(k[0] for k in found) < cutoff:
        return {k: f for k, f in found.items() if k[0] >= cutoff}
    return found


def _writable(
    conn: sa.Connection,
    rollups: sa.Table,
    level: int,
    found: dict[Key, Figures],
    oldest: dt.datetime,
    now: dt.datetime,
) -> dict[Key, Figures]:
    """``found`` without the buckets begun before the oldest raw row whose
    stored row counted more rows: their raw rows were pruned since. Rows
    are only ever added to a bucket's window, so a recount at least as
    large is never a loss (two runs at once, or the hours of one day folded
    one after the other, each write the larger count last)."""
    partial = [k for k in found if k[0] < oldest]
    if not partial:
        return found
    c = rollups.c
    bind = functools.partial(_dialects.bind_time, conn.dialect)
    query = sa.select(
        c.bucket_start, c.route_name, c.release, c.rows + c.unreadable
    ).where(
        c.bucket_seconds == level,
        c.bucket_start >= bind(min(k[0] for k in partial)),
        c.bucket_start < bind(oldest),
    )
    counted = {
        (_dialects.read_time(t0), r, rel): int(n)
        for t0, r, rel, n in conn.execute(query)
    }
    return {
        k: f
        for k, f in found.items()
        if k[0] >= oldest or f.rows + f.unreadable >= counted.get(k, 0)
    }


def _values(
    conn: sa.Connection, level: int, key: Key, figures: Figures, now: dt.datetime
) -> dict[str, t.Any]:
    start, route, release = key
    return {
        "bucket_seconds": level,
        "bucket_start": _dialects.bind_time(conn.dialect, start),
        "route_name": route,
        "release": release[:RELEASE_LENGTH],
        "rows": figures.rows,
        "requests": figures.requests,
        "errors": figures.errors,
        "client_errors": figures.client_errors,
        "slow": figures.slow,
        "duration_sum": figures.duration_sum,
        "duration_max": figures.duration_max,
        "unreadable": figures.unreadable,
        "histogram": _rounded(figures.histogram),
        "db_requests": figures.db_requests,
        "db_count": figures.db_count,
        "db_ms": figures.db_ms,
        "db_route_ms": figures.db_route_ms,
        "db_histogram": _rounded(figures.db_histogram),
        "folded_at": _dialects.bind_time(conn.dialect, now),
    }


def _rounded(histogram: sketch.Histogram) -> dict[str, float] | None:
    return {k: round(w, 9) for k, w in sorted(histogram.items())} or None


_UPDATED = (
    "rows",
    "requests",
    "errors",
    "client_errors",
    "slow",
    "duration_sum",
    "duration_max",
    "unreadable",
    "histogram",
    "db_requests",
    "db_count",
    "db_ms",
    "db_route_ms",
    "db_histogram",
    "folded_at",
)
_CHUNK = 500


def _upsert(
    conn: sa.Connection,
    rollups: sa.Table,
    level: int,
    found: dict[Key, Figures],
    now: dt.datetime,
) -> int:
    """Insert or replace the rows of ``found`` (sorted by key, so that two
    runs at once take the rows' locks in the same order)."""
    rows = [_values(conn, level, k, found[k], now) for k in sorted(found)]
    for first in range(0, len(rows), _CHUNK):
        conn.execute(
            _upsert_statement(conn.dialect, rollups), rows[first : first + _CHUNK]
        )
    return len(rows)


def _upsert_statement(dialect: sa.Dialect, rollups: sa.Table) -> t.Any:
    keys = ["bucket_seconds", "bucket_start", "route_name", "release"]
    if dialect.name == "postgresql":
        pg = postgresql.insert(rollups)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={c: pg.excluded[c] for c in _UPDATED}
        )
    if _dialects.is_mysql(dialect):
        my = mysql.insert(rollups)
        return my.on_duplicate_key_update({c: my.inserted[c] for c in _UPDATED})
    lite = sqlite.insert(rollups)
    return lite.on_conflict_do_update(
        index_elements=keys, set_={c: lite.excluded[c] for c in _UPDATED}
    )


def _set_mark(
    conn: sa.Connection, rollups: sa.Table, until: dt.datetime, now: dt.datetime
) -> None:
    """Record that the raw rows before ``until`` are folded (never moving
    the mark back: a backfill of an old range leaves it)."""
    mark = stored.folded_until(conn, rollups)
    if mark is not None and mark >= until:
        return
    figures = Figures()
    values = _values(conn, stored.MARK, (EPOCH, "", ""), figures, now)
    values["folded_at"] = _dialects.bind_time(conn.dialect, until)
    conn.execute(_upsert_statement(conn.dialect, rollups), [values])


def _age(
    conn: sa.Connection, rollups: sa.Table, now: dt.datetime, retention: Retention
) -> int:
    deleted = 0
    for level in LEVELS:
        cutoff = _dialects.bind_time(conn.dialect, now - retention.of(level))
        result = conn.execute(
            sa.delete(rollups).where(
                rollups.c.bucket_seconds == level, rollups.c.bucket_start < cutoff
            )
        )
        deleted += max(result.rowcount or 0, 0)
    return deleted
