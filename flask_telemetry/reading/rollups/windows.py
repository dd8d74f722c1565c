"""The figures of a window read from the rollups: the per-route summary
and the traffic chart's buckets.

Each reads the folded part of the window from the stored buckets and the
rest from the raw rows: counts are exact, percentiles within 1%.
"""

from __future__ import annotations

import datetime as dt
import math
import typing as t

import sqlalchemy as sa

from .. import _dialects, _window, sketch
from ..events import Bind, connection
from ..records import RouteSummary, Summaries
from ..series import Bucket
from . import raw, stored
from .buckets import DEFAULT_RETENTION, MINUTE, Figures, Key, Retention, floor
from .pieces import Piece, plan


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
    retention: Retention = DEFAULT_RETENTION,
    now: dt.datetime | None = None,
) -> Summaries:
    """Per-route figures of ``[since, until)`` from the rollups and the raw
    rows not folded yet: counts exact, percentiles within 1%."""
    now = _window.resolve(now) or dt.datetime.now(dt.UTC)
    start = _window.resolve(since, now)
    end = _window.resolve(until, now) or now
    assert start is not None
    with connection(bind) as conn:
        folded = stored.folded_until(conn, rollups)
        oldest = raw.oldest(conn, traces) if folded is not None else None
        pieces = plan(
            start, end, folded=folded, oldest_raw=oldest, now=now, retention=retention
        )
        bucketed = [p for p in pieces if p.level is not None]
        totals = stored.totals(
            conn, rollups, bucketed, route=route, release=release, unmatched=unmatched
        )
        for since_raw, until_raw in _raw_ranges(pieces):
            found = raw.buckets(
                conn,
                traces,
                since_raw,
                until_raw,
                width=None,
                route=route,
                release=release,
                unmatched=unmatched,
            )
            _add_per_route(totals, found)
    return _summaries(totals)


def _raw_ranges(pieces: t.Sequence[Piece]) -> list[tuple[dt.datetime, dt.datetime]]:
    """The ranges of ``pieces`` read from the raw rows, those that touch
    joined into one: each raw read is a query that parses every row's
    metadata, so the seconds before a window's first whole minute and the
    rest of the hour after it are one read, not two."""
    ranges: list[tuple[dt.datetime, dt.datetime]] = []
    for piece in pieces:
        if piece.level is not None:
            continue
        if ranges and ranges[-1][1] == piece.since:
            ranges[-1] = (ranges[-1][0], piece.until)
        else:
            ranges.append((piece.since, piece.until))
    return ranges


def _add_per_route(totals: dict[str, Figures], found: dict[Key, Figures]) -> None:
    """Add the figures of ``found`` to those of their route in ``totals``."""
    for (_, name, _), figures in found.items():
        target = totals.get(name)
        if target is None:
            target = totals[name] = Figures()
        target.add(figures)


def _summaries(totals: dict[str, Figures]) -> Summaries:
    """The summary of each route with requests, the busiest (requests times
    mean duration) first."""
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
    retention: Retention = DEFAULT_RETENTION,
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
    since, until = _dialects.read_time(since), _dialects.read_time(until)
    level = retention.finest(since, now)
    span = (until - since).total_seconds()
    # One bucket kept for the alignment of the first.
    width = level * max(1, math.ceil(span / (level * (MAX_BUCKETS - 1))))
    start = floor(since, width)
    count = max(1, math.ceil((until - start).total_seconds() / width))
    per_bucket: list[Figures] = [Figures() for _ in range(count)]

    def add(found: dict[Key, Figures]) -> None:
        for (at, _, _), figures in found.items():
            index = int((at - start).total_seconds() // width)
            if 0 <= index < count:
                per_bucket[index].add(figures)

    with connection(bind) as conn:
        folded = stored.folded_until(conn, rollups)
        edge = start if folded is None else max(start, min(folded, until))
        if folded is not None and edge > start:
            add(
                stored.buckets(
                    conn, rollups, level, start, edge, route=route, unmatched=unmatched
                )
            )
        if edge < until:
            recent = raw.buckets(
                conn,
                traces,
                edge,
                until,
                width=MINUTE,
                route=route,
                unmatched=unmatched,
            )
            add(recent)
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


def _route_summary(name: str, f: Figures) -> RouteSummary:
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


def _db_figures(f: Figures) -> dict[str, t.Any]:
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
