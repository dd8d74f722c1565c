"""The stored buckets read back: how far folding has reached, the buckets
of a range, and the per-route sums of the buckets of a window.

A bucket's histograms are stored as JSON objects (``{bin: weight}``); they
are read as text and merged here, each bad entry left out, so that a row
written by anything else never makes a read fail.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import sqlalchemy as sa

from .. import _dialects, _window, sketch
from .buckets import EPOCH, Figures, Key
from .pieces import Piece

#: ``bucket_seconds`` of the row that keeps how far folding has reached.
MARK = 0


def folded_until(conn: sa.Connection, rollups: sa.Table) -> dt.datetime | None:
    """How far the raw rows have been folded (None before the first fold)."""
    found = conn.execute(
        sa.select(rollups.c.folded_at).where(
            rollups.c.bucket_seconds == MARK,
            rollups.c.bucket_start == _dialects.bind_time(conn.dialect, EPOCH),
        )
    ).scalar()
    return None if found is None else _dialects.read_time(found)


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


def buckets(
    conn: sa.Connection,
    rollups: sa.Table,
    level: int,
    since: dt.datetime,
    until: dt.datetime,
    *,
    route: str | None = None,
    release: str | None = None,
    unmatched: bool = False,
) -> dict[Key, Figures]:
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
    found: dict[Key, Figures] = {}
    for row in conn.execute(query):
        key = (_dialects.read_time(row[0]), row[1], row[2])
        figures = Figures(
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
        # One row per key (the table's unique key); should two share one,
        # they are summed.
        earlier = found.get(key)
        if earlier is None:
            found[key] = figures
        else:
            earlier.add(figures)
    return found


def totals(
    conn: sa.Connection,
    rollups: sa.Table,
    pieces: t.Sequence[Piece],
    *,
    route: str | None = None,
    release: str | None = None,
    unmatched: bool = False,
) -> dict[str, Figures]:
    """The stored buckets of ``pieces`` summed per route: one GROUP BY for
    the counts and sums, one query for the histograms' JSON texts, merged
    here in one pass each. (Summing the bins in SQL, with json_each and a
    GROUP BY, took 2 to 5 times as long on SQLite and PostgreSQL, and
    MySQL/MariaDB cannot list an object's keys with their values.)"""
    if not pieces:
        return {}
    c = rollups.c
    where = [_of_pieces(conn.dialect, rollups, pieces)]
    where += _scope(rollups, route=route, release=release, unmatched=unmatched)
    sums = _sums(rollups).where(*where)
    summed = {
        row[0]: _summed(row[1:]) for row in conn.execute(sums.group_by(c.route_name))
    }
    texts = sa.select(
        c.route_name, sa.cast(c.histogram, sa.Text), sa.cast(c.db_histogram, sa.Text)
    ).where(*where)
    _merge_histograms(summed, conn.execute(texts))
    return summed


def _of_pieces(
    dialect: sa.Dialect, rollups: sa.Table, pieces: t.Sequence[Piece]
) -> sa.ColumnElement[bool]:
    """The stored buckets of any of ``pieces`` (each of its level, starting
    within its range)."""
    c = rollups.c
    return sa.or_(
        *(
            sa.and_(
                c.bucket_seconds == p.level,
                c.bucket_start >= _dialects.bind_time(dialect, p.since),
                c.bucket_start < _dialects.bind_time(dialect, p.until),
            )
            for p in pieces
        )
    )


def _sums(rollups: sa.Table) -> sa.Select[t.Any]:
    """The route, then the sums of the stored buckets' figures (the longest
    duration's maximum), in :func:`_summed`'s order."""
    c = rollups.c
    return sa.select(
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
    )


def _summed(row: t.Sequence[t.Any]) -> Figures:
    """The figures of one route's sums (after the route), without the
    histograms; a sum over nothing (NULL) is zero."""
    return Figures(
        rows=int(row[0] or 0),
        requests=float(row[1] or 0.0),
        errors=float(row[2] or 0.0),
        client_errors=float(row[3] or 0.0),
        slow=float(row[4] or 0.0),
        duration_sum=float(row[5] or 0.0),
        duration_max=float(row[6] or 0.0),
        unreadable=int(row[7] or 0),
        db_requests=float(row[8] or 0.0),
        db_count=float(row[9] or 0.0),
        db_ms=float(row[10] or 0.0),
        db_route_ms=float(row[11] or 0.0),
    )


def _merge_histograms(
    summed: dict[str, Figures], rows: t.Iterable[t.Sequence[t.Any]]
) -> None:
    """Merge each (route, histogram text, database histogram text) into its
    route's figures in ``summed``."""
    for name, text, db_text in rows:
        figures = summed.get(name)
        if figures is not None:
            _merge_text(figures.histogram, text)
            if db_text:
                _merge_text(figures.db_histogram, db_text)


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
