"""Rollups: request ends folded into per-bucket figures, exact at any scale.

Opt-in (``TELEMETRY_ROLLUPS = True``). :func:`rollup` folds the raw
``http_request_end`` rows of closed minutes into ``telemetry_rollups``: one
row per bucket, route and release with exact counts and sums and a
mergeable latency histogram (:mod:`.sketch`). Buckets are minutes, hours
and days: each level is recomputed whole from the finer one, and aged by
its own retention (minutes for 2 days, hours for 35, days for 400 by
default), so the figures of any window come from a few hundred rows
instead of every request.

Folding, in the words of the guarantees it keeps:

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

Reading (:func:`summary`): the part of a window up to the last folded
minute comes from the rollups, the rest (and the seconds at its edges) from
the raw rows; counts are exact, percentiles within 1%.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import time
import typing as t

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from ..storage.rollup_model import RELEASE_LENGTH
from ..storage.vocabulary import EventType
from . import _dialects, _window, sketch
from .events import Bind, connection
from .records import RouteSummary, Summaries
from .series import Bucket

MINUTE, HOUR, DAY = 60, 3600, 86400
#: The bucket lengths, finest first.
LEVELS = (MINUTE, HOUR, DAY)
#: ``bucket_seconds`` of the row that keeps how far folding has reached.
_MARK = 0
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_REQUEST_END = EventType.HTTP_REQUEST_END.value


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Retention:
    """How long each level of buckets is kept, in days."""

    minutes: float = 2
    hours: float = 35
    days: float = 400

    def of(self, level: int) -> dt.timedelta:
        """How long buckets of ``level`` seconds are kept."""
        days = {MINUTE: self.minutes, HOUR: self.hours, DAY: self.days}[level]
        return dt.timedelta(days=days)


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


# -- figures -----------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Figures:
    """One bucket's figures for one route and release (mutable while summed)."""

    rows: int = 0
    requests: float = 0.0
    errors: float = 0.0
    client_errors: float = 0.0
    slow: float = 0.0
    duration_sum: float = 0.0
    duration_max: float = 0.0
    unreadable: int = 0
    histogram: sketch.Histogram = dataclasses.field(default_factory=dict)
    #: The requests whose end carries database figures (weighted), their
    #: statements, their milliseconds in the database and in all, and the
    #: histogram of their database milliseconds.
    db_requests: float = 0.0
    db_count: float = 0.0
    db_ms: float = 0.0
    db_route_ms: float = 0.0
    db_histogram: sketch.Histogram = dataclasses.field(default_factory=dict)

    def add(self, other: _Figures) -> None:
        self.rows += other.rows
        self.requests += other.requests
        self.errors += other.errors
        self.client_errors += other.client_errors
        self.slow += other.slow
        self.duration_sum += other.duration_sum
        self.duration_max = max(self.duration_max, other.duration_max)
        self.unreadable += other.unreadable
        sketch.merge(self.histogram, other.histogram)
        if other.db_requests:
            self.db_requests += other.db_requests
            self.db_count += other.db_count
            self.db_ms += other.db_ms
            self.db_route_ms += other.db_route_ms
            sketch.merge(self.db_histogram, other.db_histogram)


#: (bucket start, route ("" unmatched), release ("" none)) -> figures.
_Key: t.TypeAlias = tuple[dt.datetime, str, str]


def _raw_figures(
    conn: sa.Connection,
    traces: sa.Table,
    since: dt.datetime,
    until: dt.datetime,
    *,
    width: int | None,
    route: str | None = None,
    release: str | None = None,
    unmatched: bool = False,
) -> dict[_Key, _Figures]:
    """The raw request ends of ``[since, until)`` per bucket of ``width``
    seconds counted from ``since`` (one bucket when None), route and
    release: one GROUP BY that reads each row's metadata once, with the
    duration's histogram bin among the groups."""
    dialect = conn.dialect
    froms, facts = _dialects.request_end_facts(dialect, traces)
    where = [
        traces.c.event_type == _REQUEST_END,
        traces.c.occurred_at >= _dialects.bind_time(dialect, since),
        traces.c.occurred_at < _dialects.bind_time(dialect, until),
    ]
    if unmatched:
        where.append(traces.c.route_name.is_(None))
    elif route is not None:
        where.append(_window.route_filter(traces, route))
    release_of = sa.func.coalesce(facts["release"], "")
    if release is not None:
        where.append(release_of == release)
    bucket: sa.ColumnElement[t.Any] = sa.literal(0)
    if width is not None:
        bucket = _dialects.bucket_index(conn, traces.c.occurred_at, since, width)
    duration, rate = facts["duration_ms"], facts["sample_rate"]
    weight = sa.case((rate > 0, 1.0 / rate), else_=1.0)
    failed = sa.or_(facts["status"] >= 500, facts["exception"])
    client = sa.and_(
        facts["status"] >= 400, facts["status"] < 500, sa.not_(facts["exception"])
    )
    bin_ = sketch.sql_bin(duration)
    route_of = sa.func.coalesce(traces.c.route_name, "")
    query = (
        sa.select(
            bucket.label("bucket"),
            route_of.label("route"),
            release_of.label("release"),
            bin_.label("bin"),
            sa.func.count(),
            sa.func.sum(weight),
            sa.func.sum(weight * duration),
            sa.func.max(duration),
            sa.func.sum(sa.case((failed, weight), else_=0.0)),
            sa.func.sum(sa.case((client, weight), else_=0.0)),
            sa.func.sum(sa.case((facts["slow"], weight), else_=0.0)),
            sa.func.sum(sa.case((facts["db"], weight), else_=0.0)),
            sa.func.sum(sa.case((facts["db"], weight * facts["db_count"]), else_=0.0)),
            sa.func.sum(sa.case((facts["db"], weight * facts["db_ms"]), else_=0.0)),
            sa.func.sum(sa.case((facts["db"], weight * duration), else_=0.0)),
            # Rows left out (figures unreadable) are counted in the same
            # pass, in groups of their own, under the route's "no release"
            # row; with a release asked for, they are left out.
            sa.case((facts["readable"], 1), else_=0),
        )
        .select_from(*froms)
        .where(*where, *([] if release is None else [facts["readable"]]))
        .group_by(sa.text("1, 2, 3, 4, 16"))
    )
    found: dict[_Key, _Figures] = {}
    starts: dict[t.Any, dt.datetime] = {}

    def start_of(index: t.Any) -> dt.datetime:
        if width is None:
            return since
        start = starts.get(index)
        if start is None:
            start = since + dt.timedelta(seconds=int(index) * width)
            starts[index] = start
        return start

    with_db = False
    for row in conn.execute(query):
        b, name, rel, key, n, w, wd, top, err, cli, slow = row[:11]
        db_w, db_n, db_ms, db_route, ok = row[11:]
        if not ok:
            unread = found.setdefault((start_of(b), name, ""), _Figures())
            unread.unreadable += int(n)
            continue
        figures = found.setdefault((start_of(b), name, rel), _Figures())
        figures.rows += int(n)
        figures.requests += float(w)
        figures.duration_sum += float(wd or 0.0)
        figures.duration_max = max(figures.duration_max, float(top or 0.0))
        figures.errors += float(err or 0.0)
        figures.client_errors += float(cli or 0.0)
        figures.slow += float(slow or 0.0)
        bin_key = sketch.key_of(key)
        figures.histogram[bin_key] = figures.histogram.get(bin_key, 0.0) + float(w)
        if db_w:
            with_db = True
            figures.db_requests += float(db_w)
            figures.db_count += float(db_n or 0.0)
            figures.db_ms += float(db_ms or 0.0)
            figures.db_route_ms += float(db_route or 0.0)
    if with_db:
        # The database milliseconds' histogram: a second pass, only where
        # the SQLAlchemy integration recorded figures.
        db_bin = sketch.sql_bin(facts["db_ms"])
        histograms = (
            sa.select(
                bucket.label("bucket"),
                route_of.label("route"),
                release_of.label("release"),
                db_bin.label("bin"),
                sa.func.sum(weight),
            )
            .select_from(*froms)
            .where(*where, facts["readable"], facts["db"])
            .group_by(sa.text("1, 2, 3, 4"))
        )
        for b, name, rel, key, w in conn.execute(histograms):
            figures = found.setdefault((start_of(b), name, rel), _Figures())
            bin_key = sketch.key_of(key)
            db = figures.db_histogram
            db[bin_key] = db.get(bin_key, 0.0) + float(w)
    return found


# -- time --------------------------------------------------------------------


def _floor(when: dt.datetime, width: int) -> dt.datetime:
    seconds = (when - _EPOCH).total_seconds()
    return _EPOCH + dt.timedelta(seconds=math.floor(seconds / width) * width)


def _ceil(when: dt.datetime, width: int) -> dt.datetime:
    floor = _floor(when, width)
    return floor if floor == when else floor + dt.timedelta(seconds=width)


def _aware(value: t.Any) -> dt.datetime:
    return _dialects.read_time(value)


# -- folding -----------------------------------------------------------------


def rollup(
    bind: Bind,
    traces: sa.Table,
    rollups: sa.Table,
    *,
    since: _window.TimeBound | None = None,
    grace: dt.timedelta = dt.timedelta(minutes=5),
    retention: Retention = Retention(),
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
    end = _floor(now, MINUTE)
    if isinstance(bind, sa.Connection):
        raise TypeError("rollup() takes an Engine: it commits as it goes.")
    with bind.connect() as conn:
        oldest = _oldest_raw(conn, traces)
        start = _start(conn, rollups, since, grace, oldest)
        conn.rollback()
        rows = buckets = 0
        if start is not None and oldest is not None and start < end:
            at = start
            # This run's hours of the day being folded, for its day bucket.
            hours: dict[_Key, _Figures] | None = None
            while at < end:
                # One transaction an hour of buckets (a day, past the hours'
                # retention): the writer never waits long for the locks a
                # fold holds, a backfill of months commits as it goes, and
                # a killed run loses one hour's work.
                step = HOUR if at >= now - retention.of(HOUR) else DAY
                stop = min(_floor(at, step) + dt.timedelta(seconds=step), end)
                if _floor(at, DAY) == at:
                    hours = None

                def fold(
                    at: dt.datetime = at,
                    stop: dt.datetime = stop,
                    hours: dict[_Key, _Figures] | None = hours,
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


def _oldest_raw(conn: sa.Connection, traces: sa.Table) -> dt.datetime | None:
    found = conn.execute(
        sa.select(sa.func.min(traces.c.occurred_at)).where(
            traces.c.event_type == _REQUEST_END
        )
    ).scalar()
    return None if found is None else _aware(found)


def folded_until(conn: sa.Connection, rollups: sa.Table) -> dt.datetime | None:
    """How far the raw rows have been folded (None before the first fold)."""
    found = conn.execute(
        sa.select(rollups.c.folded_at).where(
            rollups.c.bucket_seconds == _MARK,
            rollups.c.bucket_start == _dialects.bind_time(conn.dialect, _EPOCH),
        )
    ).scalar()
    return None if found is None else _aware(found)


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
        start = _floor(start, DAY)
    else:
        mark = folded_until(conn, rollups)
        if mark is None:
            if oldest is None:
                return None
            return _floor(oldest, DAY)
        start = _floor(mark - grace, HOUR)
    if oldest is not None and start < _floor(oldest, DAY):
        start = _floor(oldest, DAY)
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
    before: dict[_Key, _Figures] | None = None,
) -> tuple[int, int, dict[_Key, _Figures]]:
    """Fold ``[start, end)`` (within one UTC day, ``start`` on an hour) and
    write its minutes, hours and its day; returns (raw rows, rows written,
    the day's hours up to ``end``). ``before``: the day's hours before
    ``start`` (read from the table when None).

    The raw rows are grouped by the finest level still kept at ``end``
    (hours, or the day, for a range past the minutes' retention): the
    levels not kept would be left unwritten, and fewer, larger groups are
    what makes a backfill of months fast."""
    width = MINUTE
    if end <= now - retention.of(MINUTE):
        width = HOUR
        if end <= now - retention.of(HOUR) and _floor(start, DAY) == start:
            width = DAY
    grouped = _raw_figures(conn, traces, start, end, width=width)
    rows = sum(f.rows for f in grouped.values())
    minutes = grouped if width == MINUTE else {}
    hours = _merged(grouped, HOUR) if width == MINUTE else grouped
    if width == DAY:
        hours = {}
    # The day: this range's hours, and those of the day before ``start``
    # as stored (folded by earlier runs).
    day_start = _floor(start, DAY)
    earlier = (
        _stored(conn, rollups, HOUR, day_start, start) if before is None else before
    )
    so_far = {**earlier, **hours}
    days = grouped if width == DAY else _merged(so_far, DAY)
    written = 0
    for level, found in ((MINUTE, minutes), (HOUR, hours), (DAY, days)):
        if not found:
            continue
        if found and min(k[0] for k in found) < now - retention.of(level):
            found = {
                k: f for k, f in found.items() if k[0] >= now - retention.of(level)
            }
        keep = _writable(conn, rollups, level, found, oldest, now)
        written += _upsert(conn, rollups, level, keep, now)
    return rows, written, so_far


def _merged(found: dict[_Key, _Figures], width: int) -> dict[_Key, _Figures]:
    """``found``'s buckets summed into buckets of ``width`` seconds."""
    merged: dict[_Key, _Figures] = {}
    for (start, route, release), figures in found.items():
        key = (_floor(start, width), route, release)
        target = merged.get(key)
        if target is None:
            target = merged[key] = _Figures()
        target.add(figures)
    return merged


def _scope(
    rollups: sa.Table,
    *,
    route: str | None,
    release: str | None,
    unmatched: bool,
) -> list[sa.ColumnElement[bool]]:
    """The stored buckets of one route (a name or a glob), or of the
    unmatched requests (stored as ``""``), and of one release."""
    c = rollups.c
    where: list[sa.ColumnElement[bool]] = []
    if unmatched:
        where.append(c.route_name == "")
    elif route is not None:
        where.append(_window.route_filter(rollups, route))
    if release is not None:
        where.append(c.release == release)
    return where


def _stored(
    conn: sa.Connection,
    rollups: sa.Table,
    level: int,
    since: dt.datetime,
    until: dt.datetime,
    *,
    route: str | None = None,
    release: str | None = None,
    unmatched: bool = False,
) -> dict[_Key, _Figures]:
    """The stored buckets of ``level`` starting in ``[since, until)``."""
    if since >= until:
        return {}
    c = rollups.c
    where = [
        c.bucket_seconds == level,
        c.bucket_start >= _dialects.bind_time(conn.dialect, since),
        c.bucket_start < _dialects.bind_time(conn.dialect, until),
    ]
    where += _scope(rollups, route=route, release=release, unmatched=unmatched)
    query = sa.select(
        c.bucket_start,
        c.route_name,
        c.release,
        c.rows,
        c.requests,
        c.errors,
        c.client_errors,
        c.slow,
        c.duration_sum,
        c.duration_max,
        c.unreadable,
        sa.cast(c.histogram, sa.Text),
        c.db_requests,
        c.db_count,
        c.db_ms,
        c.db_route_ms,
        sa.cast(c.db_histogram, sa.Text),
    ).where(*where)
    found: dict[_Key, _Figures] = {}
    for row in conn.execute(query):
        key = (_aware(row[0]), row[1], row[2])
        figures = found.setdefault(key, _Figures())
        figures.add(
            _Figures(
                rows=int(row[3]),
                requests=float(row[4]),
                errors=float(row[5]),
                client_errors=float(row[6]),
                slow=float(row[7]),
                duration_sum=float(row[8]),
                duration_max=float(row[9]),
                unreadable=int(row[10]),
                histogram=_histogram(row[11]),
                db_requests=float(row[12] or 0.0),
                db_count=float(row[13] or 0.0),
                db_ms=float(row[14] or 0.0),
                db_route_ms=float(row[15] or 0.0),
                db_histogram=_histogram(row[16]),
            )
        )
    return found


def _stored_totals(
    conn: sa.Connection,
    rollups: sa.Table,
    pieces: t.Sequence[_Piece],
    *,
    route: str | None = None,
    release: str | None = None,
    unmatched: bool = False,
) -> dict[str, _Figures]:
    """The stored buckets of ``pieces`` summed per route: one GROUP BY for
    the counts and sums, one query for the histograms' JSON texts, merged
    here in one pass each. (Summing the bins in SQL, with json_each and a
    GROUP BY, took 2 to 5 times as long on SQLite and PostgreSQL, and
    MySQL/MariaDB cannot list an object's keys with their values.)"""
    if not pieces:
        return {}
    c = rollups.c
    dialect = conn.dialect
    where: list[sa.ColumnElement[bool]] = [
        sa.or_(
            *(
                sa.and_(
                    c.bucket_seconds == p.level,
                    c.bucket_start >= _dialects.bind_time(dialect, p.since),
                    c.bucket_start < _dialects.bind_time(dialect, p.until),
                )
                for p in pieces
            )
        )
    ]
    where += _scope(rollups, route=route, release=release, unmatched=unmatched)
    sums = sa.select(
        c.route_name,
        sa.func.sum(c.rows),
        sa.func.sum(c.requests),
        sa.func.sum(c.errors),
        sa.func.sum(c.client_errors),
        sa.func.sum(c.slow),
        sa.func.sum(c.duration_sum),
        sa.func.max(c.duration_max),
        sa.func.sum(c.unreadable),
        sa.func.sum(c.db_requests),
        sa.func.sum(c.db_count),
        sa.func.sum(c.db_ms),
        sa.func.sum(c.db_route_ms),
    ).where(*where)
    totals: dict[str, _Figures] = {}
    for row in conn.execute(sums.group_by(c.route_name)):
        totals[row[0]] = _Figures(
            rows=int(row[1] or 0),
            requests=float(row[2] or 0.0),
            errors=float(row[3] or 0.0),
            client_errors=float(row[4] or 0.0),
            slow=float(row[5] or 0.0),
            duration_sum=float(row[6] or 0.0),
            duration_max=float(row[7] or 0.0),
            unreadable=int(row[8] or 0),
            db_requests=float(row[9] or 0.0),
            db_count=float(row[10] or 0.0),
            db_ms=float(row[11] or 0.0),
            db_route_ms=float(row[12] or 0.0),
        )
    texts = sa.select(
        c.route_name, sa.cast(c.histogram, sa.Text), sa.cast(c.db_histogram, sa.Text)
    ).where(*where)
    for name, text, db_text in conn.execute(texts):
        figures = totals.get(name)
        if figures is not None:
            _merge_text(figures.histogram, text)
            if db_text:
                _merge_text(figures.db_histogram, db_text)
    return totals


def _merge_text(into: sketch.Histogram, text: t.Any) -> None:
    """Add the weights of a stored histogram (JSON text) to ``into``, in one
    pass: a text that is no JSON object adds nothing, nor does a weight that
    is no number."""
    if not text:
        return
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return
    if not isinstance(value, dict):
        return
    get = into.get
    for key, weight in value.items():
        kind = type(weight)
        if kind is float or kind is int:
            into[key] = get(key, 0.0) + weight
        elif isinstance(weight, (int, float)) and not isinstance(weight, bool):
            into[key] = get(key, 0.0) + float(weight)


def _histogram(text: t.Any) -> sketch.Histogram:
    """A stored histogram (JSON text) read back, its bad entries left out."""
    found: sketch.Histogram = {}
    _merge_text(found, text)
    return found


def _writable(
    conn: sa.Connection,
    rollups: sa.Table,
    level: int,
    found: dict[_Key, _Figures],
    oldest: dt.datetime,
    now: dt.datetime,
) -> dict[_Key, _Figures]:
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
    stored = {(_aware(t0), r, rel): int(n) for t0, r, rel, n in conn.execute(query)}
    return {
        k: f
        for k, f in found.items()
        if k[0] >= oldest or f.rows + f.unreadable >= stored.get(k, 0)
    }


def _values(
    conn: sa.Connection, level: int, key: _Key, figures: _Figures, now: dt.datetime
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
    found: dict[_Key, _Figures],
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
    mark = folded_until(conn, rollups)
    if mark is not None and mark >= until:
        return
    figures = _Figures()
    values = _values(conn, _MARK, (_EPOCH, "", ""), figures, now)
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


# -- reading -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Piece:
    """Part of a window: raw rows (``level`` None) or buckets of ``level``."""

    level: int | None
    since: dt.datetime
    until: dt.datetime


def plan(
    since: dt.datetime,
    until: dt.datetime,
    *,
    folded: dt.datetime | None,
    oldest_raw: dt.datetime | None,
    now: dt.datetime,
    retention: Retention,
) -> list[_Piece]:
    """How to read ``[since, until)``: the fewest buckets of the levels kept
    for each part, raw rows for the seconds at the edges and for what is not
    folded yet. Where the raw rows are gone and the finer buckets too, an
    edge widens to the bucket that holds it (the only inexact case)."""
    pieces: list[_Piece] = []
    end = until if folded is None else min(until, folded)
    if folded is None or end <= since:
        return [_Piece(None, since, until)]

    def kept(level: int, when: dt.datetime) -> bool:
        return when >= now - retention.of(level)

    def raw(when: dt.datetime) -> bool:
        return oldest_raw is not None and when >= oldest_raw

    # The edges: raw rows where they exist, else the edge widens outwards
    # to the finest level kept there.
    start = since
    level = MINUTE
    if not raw(since):
        for level in LEVELS:
            if kept(level, since) or level == DAY:
                break
        start = _floor(since, level)
    lead = _ceil(start, MINUTE)
    if start < lead and raw(start):
        pieces.append(_Piece(None, start, min(lead, end)))
    stop = _floor(end, MINUTE)
    if stop < end and not raw(stop):
        stop = _ceil(end, MINUTE)  # no raw rows there: the whole minute
    pieces += _cover(lead, stop, kept, raw)
    if stop < end and stop >= lead:
        pieces.append(_Piece(None, stop, end))
    if end < until:
        pieces.append(_Piece(None, end, until))
    return [p for p in pieces if p.since < p.until]


def _cover(
    start: dt.datetime,
    end: dt.datetime,
    kept: t.Callable[[int, dt.datetime], bool],
    raw: t.Callable[[dt.datetime], bool],
) -> list[_Piece]:
    """Pieces covering ``[start, end)`` (minute-aligned): at each step the
    coarsest bucket that starts there, fits and is kept. Where none fits
    (the finer buckets aged), raw rows up to the next bucket that does, or,
    with the raw rows gone too, the kept bucket holding that part."""
    steps: list[_Piece] = []
    at = start
    while at < end:
        for level in (DAY, HOUR, MINUTE):
            size = dt.timedelta(seconds=level)
            if _floor(at, level) == at and at + size <= end and kept(level, at):
                steps.append(_Piece(level, at, at + size))
                break
        else:
            level = next((lv for lv in LEVELS if kept(lv, at)), DAY)
            if raw(at):
                steps.append(_Piece(None, at, min(_ceil(at + _TICK, level), end)))
            else:
                first = _floor(at, level)
                steps.append(_Piece(level, first, first + dt.timedelta(seconds=level)))
        at = steps[-1].until
    # Runs of one level read as one range.
    pieces: list[_Piece] = []
    for step in steps:
        last = pieces[-1] if pieces else None
        if last is not None and last.level == step.level and last.until == step.since:
            pieces[-1] = _Piece(step.level, last.since, step.until)
        else:
            pieces.append(step)
    return pieces


_TICK = dt.timedelta(microseconds=1)


def summary(
    bind: Bind,
    traces: sa.Table,
    rollups: sa.Table,
    *,
    since: _window.TimeBound,
    until: _window.TimeBound | None = None,
    route: str | None = None,
    release: str | None = None,
    unmatched: bool = False,
    retention: Retention = Retention(),
    now: dt.datetime | None = None,
) -> Summaries:
    """Per-route figures of ``[since, until)`` from the rollups and the raw
    rows not folded yet: counts exact, percentiles within 1%."""
    now = _window.resolve(now) or dt.datetime.now(dt.UTC)
    start = _window.resolve(since, now)
    end = _window.resolve(until, now) or now
    assert start is not None
    totals: dict[str, _Figures] = {}
    with connection(bind) as conn:
        folded = folded_until(conn, rollups)
        oldest = _oldest_raw(conn, traces) if folded is not None else None
        pieces = plan(
            start, end, folded=folded, oldest_raw=oldest, now=now, retention=retention
        )
        stored = [p for p in pieces if p.level is not None]
        for name, figures in _stored_totals(
            conn, rollups, stored, route=route, release=release, unmatched=unmatched
        ).items():
            totals[name] = figures
        for piece in pieces:
            if piece.level is not None:
                continue
            found = _raw_figures(
                conn,
                traces,
                piece.since,
                piece.until,
                width=None,
                route=route,
                release=release,
                unmatched=unmatched,
            )
            for (_, name, _), figures in found.items():
                target = totals.get(name)
                if target is None:
                    target = totals[name] = _Figures()
                target.add(figures)
    routes = [_route_summary(name, f) for name, f in totals.items() if f.requests > 0]
    routes.sort(key=lambda s: (-s.requests * s.mean_ms, s.route_name or ""))
    return Summaries(routes, unreadable=sum(f.unreadable for f in totals.values()))


#: The most buckets a chart series has.
MAX_BUCKETS = 120


def traffic(
    bind: Bind,
    traces: sa.Table,
    rollups: sa.Table,
    *,
    since: dt.datetime,
    until: dt.datetime,
    route: str | None = None,
    unmatched: bool = False,
    retention: Retention = Retention(),
    now: dt.datetime | None = None,
) -> list[Bucket]:
    """Requests, errors and p50/p95/p99 per time bucket, oldest first, as
    :func:`.series.traffic` gives them, from the rollups (and the raw rows
    not folded yet): exact counts, percentiles within 1%.

    The buckets are whole multiples of the finest rollup level kept at
    ``since`` (at most :data:`MAX_BUCKETS`), so the first one may begin
    before ``since``. ``route`` is an endpoint name (or ``unmatched``).
    """
    now = _window.resolve(now) or dt.datetime.now(dt.UTC)
    since, until = _aware(since), _aware(until)
    level = next((lv for lv in LEVELS if since >= now - retention.of(lv)), DAY)
    span = (until - since).total_seconds()
    # One bucket kept for the alignment of the first.
    width = level * max(1, math.ceil(span / (level * (MAX_BUCKETS - 1))))
    start = _floor(since, width)
    count = max(1, math.ceil((until - start).total_seconds() / width))
    per_bucket: list[_Figures] = [_Figures() for _ in range(count)]

    def add(found: dict[_Key, _Figures]) -> None:
        for (at, _, _), figures in found.items():
            index = int((at - start).total_seconds() // width)
            if 0 <= index < count:
                per_bucket[index].add(figures)

    with connection(bind) as conn:
        folded = folded_until(conn, rollups)
        edge = start if folded is None else max(start, min(folded, until))
        if folded is not None and edge > start:
            add(
                _stored(
                    conn, rollups, level, start, edge, route=route, unmatched=unmatched
                )
            )
        if edge < until:
            raw = _raw_figures(
                conn,
                traces,
                edge,
                until,
                width=MINUTE,
                route=route,
                unmatched=unmatched,
            )
            add(raw)
    found = []
    for index, figures in enumerate(per_bucket):
        p50, p95, p99 = sketch.quantiles(figures.histogram, _dialects.FRACTIONS)
        found.append(
            Bucket(
                start=start + dt.timedelta(seconds=index * width),
                seconds=width,
                requests=round(figures.requests),
                errors=round(figures.errors),
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
            )
        )
    return found


def _route_summary(name: str, f: _Figures) -> RouteSummary:
    p50, p95, p99 = sketch.quantiles(f.histogram, _dialects.FRACTIONS)
    return RouteSummary(
        route_name=name or None,
        requests=round(f.requests),
        errors=round(f.errors),
        client_errors=round(f.client_errors),
        error_rate=f.errors / f.requests,
        slow=round(f.slow),
        mean_ms=f.duration_sum / f.requests,
        p50_ms=p50 or 0.0,
        p95_ms=p95 or 0.0,
        p99_ms=p99 or 0.0,
        max_ms=f.duration_max,
        rows=f.rows,
        **_db_figures(f),
    )


def _db_figures(f: _Figures) -> dict[str, t.Any]:
    """The database fields of :class:`RouteSummary` (none without figures)."""
    if f.db_requests <= 0:
        return {}
    (p95,) = sketch.quantiles(f.db_histogram, (0.95,))
    return {
        "db_requests": round(f.db_requests),
        "mean_db_count": f.db_count / f.db_requests,
        "mean_db_ms": f.db_ms / f.db_requests,
        "p95_db_ms": p95,
        "db_share": min(f.db_ms / f.db_route_ms, 1.0) if f.db_route_ms > 0 else 0.0,
    }


__all__ = [
    "DAY",
    "HOUR",
    "LEVELS",
    "MINUTE",
    "Retention",
    "RollupResult",
    "folded_until",
    "plan",
    "rollup",
    "summary",
    "traffic",
]
