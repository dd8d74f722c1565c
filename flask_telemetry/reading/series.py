"""Time series and distributions of ``http_request_end`` for the dashboard.

Queries beside the read API's: requests per minute, error rate and latency
percentiles over time buckets, one route's latency histogram, its status
breakdown and its slowest requests. SQLAlchemy Core on the model's table,
run on a connection the caller gives; every query is bounded by a time
window and a row limit, and takes its filters as bound parameters.

The database does the aggregation: a chart of any window is at most a few
thousand grouped rows, never the window's events. Percentiles over time are
read from a histogram of logarithmic duration bins (:data:`BINS_PER_E` per
factor e, so a value is within about 2.5 % of the exact one): they draw a
chart, while the exact, linearly interpolated percentiles of a whole window
are :func:`request_summary`'s. Sampled rows (``sample_rate`` below 1 in
their metadata) count for ``1 / sample_rate`` requests, as in the summary.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import typing as t

import sqlalchemy as sa

from . import _dialects
from . import sample as _sample
from ._window import matchable, no_row

#: Histogram bins per factor e of duration, for the percentiles over time.
BINS_PER_E = 20
#: Bins per factor 10 of the latency histogram of a route.
HISTOGRAM_BINS_PER_DECADE = 4
#: Durations below this (ms) fall in the lowest bin (the log of 0 is undefined).
MIN_DURATION_MS = 0.001
#: At most this many time buckets in a series.
MAX_BUCKETS = 400

_REQUEST_END = "http_request_end"
#: Bucket widths a series picks from, in seconds: whole minutes, hours, days.
_WIDTHS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Bucket:
    """One time bucket of a series: from ``start`` for ``seconds``."""

    start: dt.datetime
    seconds: int
    #: Requests (sampled rows weighted), rounded to an integer.
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def per_minute(self) -> float:
        """Requests per minute in this bucket."""
        return self.requests * 60.0 / self.seconds

    @property
    def error_rate(self) -> float:
        """Errors (status >= 500 or an exception) over requests; 0 when none."""
        return self.errors / self.requests if self.requests else 0.0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HistogramBin:
    """Requests whose duration is in ``[low_ms, high_ms)``."""

    low_ms: float
    high_ms: float
    requests: int


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StatusCount:
    """Requests that ended with ``status`` (500 for an exception without one)."""

    status: int
    requests: int


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SlowRequest:
    """One stored ``http_request_end`` among a route's slowest."""

    id: int
    occurred_at: dt.datetime
    request_id: str | None
    method: str | None
    status: int | None
    duration_ms: float
    exception: str | None


def bucket_seconds(since: dt.datetime, until: dt.datetime, *, buckets: int) -> int:
    """The bucket width for about ``buckets`` buckets over the window.

    A whole number of minutes from a fixed list (1, 2, 5, 10, 15, 30 min,
    1, 2, 3, 6, 12 h, 1 day), the smallest that gives at most ``buckets``.
    """
    total = max((until - since).total_seconds(), 1.0)
    for width in _WIDTHS:
        if total / width <= buckets:
            return width
    return math.ceil(total / buckets / 86400.0) * 86400


def traffic(
    conn: sa.Connection,
    table: sa.Table,
    *,
    since: dt.datetime,
    until: dt.datetime,
    buckets: int = 60,
    route: str | None = None,
    unmatched: bool = False,
    sample: _sample.Sample | None = None,
) -> list[Bucket]:
    """Requests, errors and p50/p95/p99 per time bucket, oldest first.

    Every bucket of the window is in the list, empty ones with no requests
    and percentiles of None. ``route`` (an endpoint name) or ``unmatched``
    (requests no route matched) narrows it to one route. With a ``sample``,
    its rows only, counts scaled up to the window.
    """
    since, until = _aware(since), _aware(until)
    buckets = max(1, min(buckets, MAX_BUCKETS))
    width = bucket_seconds(since, until, buckets=buckets)
    count = math.ceil((until - since).total_seconds() / width) or 1
    facts = _facts(
        conn,
        table,
        since=since,
        until=until,
        route=route,
        unmatched=unmatched,
        sample=sample,
    )
    scale = _sample.scale(sample)
    bucket = _dialects.bucket_index(conn, facts.c.occurred_at, since, width).label(
        "bucket"
    )
    log_bin = sa.func.floor(
        sa.func.ln(_greatest(conn, facts.c.duration, MIN_DURATION_MS)) * BINS_PER_E
    ).label("bin")
    weight = sa.func.sum(facts.c.weight).label("weight")
    errors = sa.func.sum(sa.case((facts.c.error == 1, facts.c.weight), else_=0)).label(
        "errors"
    )
    query = (
        sa.select(bucket, log_bin, weight, errors)
        .group_by(bucket, log_bin)
        .order_by(bucket, log_bin)
        .limit(count * 2000)
    )
    grouped: dict[int, list[tuple[int, float, float]]] = {}
    for b, bin_, w, e in conn.execute(query):
        if b is None or not 0 <= int(b) < count:
            continue
        grouped.setdefault(int(b), []).append((int(bin_), float(w), float(e or 0)))
    series = []
    for index in range(count):
        bins = grouped.get(index, [])
        total = sum(w for _, w, _ in bins)
        quantiles = _quantiles(bins, total, (0.5, 0.95, 0.99))
        series.append(
            Bucket(
                start=since + dt.timedelta(seconds=index * width),
                seconds=width,
                requests=round(total * scale),
                errors=round(sum(e for _, _, e in bins) * scale),
                p50_ms=quantiles[0],
                p95_ms=quantiles[1],
                p99_ms=quantiles[2],
            )
        )
    return series


def latency_histogram(
    conn: sa.Connection,
    table: sa.Table,
    *,
    since: dt.datetime,
    until: dt.datetime,
    route: str | None = None,
    unmatched: bool = False,
    sample: _sample.Sample | None = None,
) -> list[HistogramBin]:
    """Requests per duration bin (:data:`HISTOGRAM_BINS_PER_DECADE` per
    factor 10), from the fastest bin to the slowest, empty bins between
    included. With a ``sample``, its rows scaled up to the window."""
    facts = _facts(
        conn,
        table,
        since=_aware(since),
        until=_aware(until),
        route=route,
        unmatched=unmatched,
        sample=sample,
    )
    scale = _sample.scale(sample)
    per_decade = HISTOGRAM_BINS_PER_DECADE
    log_bin = sa.func.floor(
        sa.func.ln(_greatest(conn, facts.c.duration, MIN_DURATION_MS))
        * (per_decade / math.log(10))
    ).label("bin")
    query = (
        sa.select(log_bin, sa.func.sum(facts.c.weight))
        .group_by(log_bin)
        .order_by(log_bin)
        .limit(1000)
    )
    counts = {int(b): float(w) for b, w in conn.execute(query) if b is not None}
    if not counts:
        return []
    return [
        HistogramBin(
            low_ms=10 ** (b / per_decade),
            high_ms=10 ** ((b + 1) / per_decade),
            requests=round(counts.get(b, 0.0) * scale),
        )
        for b in range(min(counts), max(counts) + 1)
    ]


def status_breakdown(
    conn: sa.Connection,
    table: sa.Table,
    *,
    since: dt.datetime,
    until: dt.datetime,
    route: str | None = None,
    unmatched: bool = False,
    limit: int = 50,
    sample: _sample.Sample | None = None,
) -> list[StatusCount]:
    """Requests per response status, the most frequent first. With a
    ``sample``, its rows scaled up to the window."""
    facts = _facts(
        conn,
        table,
        since=_aware(since),
        until=_aware(until),
        route=route,
        unmatched=unmatched,
        sample=sample,
    )
    scale = _sample.scale(sample)
    total = sa.func.sum(facts.c.weight).label("requests")
    query = (
        sa.select(facts.c.status, total)
        .group_by(facts.c.status)
        .order_by(total.desc(), facts.c.status)
        .limit(limit)
    )
    return [
        StatusCount(
            status=int(status) if status is not None else 500,
            requests=round(float(n) * scale),
        )
        for status, n in conn.execute(query)
    ]


def slowest(
    conn: sa.Connection,
    table: sa.Table,
    *,
    since: dt.datetime,
    until: dt.datetime,
    route: str | None = None,
    unmatched: bool = False,
    limit: int = 20,
    sample: _sample.Sample | None = None,
) -> list[SlowRequest]:
    """The ``limit`` slowest requests of the window, the slowest first; with
    a ``sample``, the slowest of its rows."""
    froms, facts = _dialects.request_end_facts(conn.dialect, table)
    duration = facts["duration_ms"]
    meta = table.c.metadata
    query = (
        sa.select(
            table.c.id,
            table.c.occurred_at,
            table.c.request_id,
            meta["method"].as_string(),
            facts["status"],
            duration,
            meta["exception"].as_string(),
        )
        .select_from(*froms)
        .where(
            *_window(
                conn, table, _aware(since), _aware(until), route, unmatched, sample
            ),
            facts["readable"],
        )
        .order_by(duration.desc(), table.c.id.desc())
        .limit(limit)
    )
    return [
        SlowRequest(
            id=row[0],
            occurred_at=_dialects.read_time(row[1]),
            request_id=row[2],
            method=row[3],
            status=row[4],
            duration_ms=float(row[5] or 0.0),
            exception=row[6],
        )
        for row in conn.execute(query)
    ]


def request_rows(
    conn: sa.Connection,
    table: sa.Table,
    *,
    since: dt.datetime,
    until: dt.datetime,
    route: str | None = None,
    unmatched: bool = False,
    sample: _sample.Sample | None = None,
) -> float:
    """How many ``http_request_end`` rows the window holds (of one route
    when ``route`` or ``unmatched`` is given), read from the indexes alone.

    With a ``sample`` (a :func:`~flask_telemetry.reading.sample.probe` to
    choose a sample's fraction), an estimate: the rows in it, scaled.
    """
    where = _window(conn, table, _aware(since), _aware(until), route, unmatched, sample)
    return _rows(conn, table, where, sample)


def event_rows(
    conn: sa.Connection,
    table: sa.Table,
    *,
    since: dt.datetime,
    until: dt.datetime,
    sample: _sample.Sample | None = None,
) -> float:
    """How many events of any type the window holds (from the time index);
    with a ``sample``, an estimate as :func:`request_rows`'s."""
    where = _sample.time_filters(
        conn.dialect, table, _aware(since), _aware(until), sample
    )
    return _rows(conn, table, where, sample)


def _rows(
    conn: sa.Connection,
    table: sa.Table,
    where: list[sa.ColumnElement[bool]],
    sample: _sample.Sample | None,
) -> float:
    """The rows ``where`` keeps, scaled by the sample's fraction."""
    query = sa.select(sa.func.count()).select_from(table).where(*where)
    return int(conn.execute(query).scalar_one()) * _sample.scale(sample)


# -- building blocks ---------------------------------------------------------


def _facts(
    conn: sa.Connection,
    table: sa.Table,
    *,
    since: dt.datetime,
    until: dt.datetime,
    route: str | None,
    unmatched: bool,
    sample: _sample.Sample | None,
) -> sa.Subquery:
    """``http_request_end`` rows of the window as (occurred_at, duration,
    status, error, weight), the metadata read the way the summary reads it;
    the rows whose figures cannot be read are left out."""
    froms, facts = _dialects.request_end_facts(conn.dialect, table)
    rate = facts["sample_rate"]
    error = sa.case(
        (facts["status"] >= 500, 1),
        (facts["exception"], 1),
        else_=0,
    )
    weight = sa.case((rate > 0, 1.0 / rate), else_=1.0)
    return (
        sa.select(
            table.c.occurred_at.label("occurred_at"),
            facts["duration_ms"].label("duration"),
            facts["status"].label("status"),
            error.label("error"),
            weight.label("weight"),
        )
        .select_from(*froms)
        .where(
            *_window(conn, table, since, until, route, unmatched, sample),
            facts["readable"],
        )
        .subquery("facts")
    )


def _window(
    conn: sa.Connection,
    table: sa.Table,
    since: dt.datetime,
    until: dt.datetime,
    route: str | None,
    unmatched: bool,
    sample: _sample.Sample | None = None,
) -> list[sa.ColumnElement[bool]]:
    where = [
        table.c.event_type == _REQUEST_END,
        *_sample.time_filters(conn.dialect, table, since, until, sample),
    ]
    if unmatched:
        where.append(table.c.route_name.is_(None))
    elif route is not None:
        # A name holding NUL matches no row (PostgreSQL refuses to compare it).
        where.append(table.c.route_name == route if matchable(route) else no_row())
    return where


def _greatest(
    conn: sa.Connection, value: sa.ColumnElement[t.Any], floor: float
) -> sa.ColumnElement[t.Any]:
    # SQLite's two-argument max() is its GREATEST; NULL stays NULL on all.
    if conn.dialect.name == "sqlite":
        return sa.func.max(value, floor)
    return sa.func.greatest(value, floor)


def _quantiles(
    bins: list[tuple[int, float, float]], total: float, qs: tuple[float, ...]
) -> list[float | None]:
    """Quantiles ``qs`` of a histogram of (bin, weight, _) sorted by bin,
    interpolated geometrically inside the bin that holds each rank."""
    if total <= 0:
        return [None] * len(qs)
    found: list[float | None] = []
    for q in qs:
        target = q * total
        seen = 0.0
        value = None
        for bin_, weight, _ in bins:
            if seen + weight >= target:
                inside = (target - seen) / weight if weight else 0.0
                value = math.exp((bin_ + inside) / BINS_PER_E)
                break
            seen += weight
        if value is None:
            value = math.exp((bins[-1][0] + 1) / BINS_PER_E)
        found.append(value)
    return found


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


__all__ = [
    "Bucket",
    "HistogramBin",
    "SlowRequest",
    "StatusCount",
    "bucket_seconds",
    "event_rows",
    "latency_histogram",
    "request_rows",
    "slowest",
    "status_breakdown",
    "traffic",
]
