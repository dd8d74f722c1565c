"""The raw request ends read as rollup buckets: the source every bucket is
folded from, and the part of a window that is not folded yet.

:func:`buckets` groups the ``http_request_end`` rows of a range by bucket,
route, release and histogram bin in the database, and sums each group's
figures there; Python only adds the groups of a bucket together.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa

from ...storage.vocabulary import EventType
from .. import _dialects, _window, sketch
from .buckets import Figures, Key

REQUEST_END = EventType.HTTP_REQUEST_END.value


def buckets(
    conn: sa.Connection,
    traces: sa.Table,
    since: dt.datetime,
    until: dt.datetime,
    *,
    width: int | None,
    route: str | None = None,
    release: str | None = None,
    unmatched: bool = False,
) -> dict[Key, Figures]:
    """The raw request ends of ``[since, until)`` per bucket of ``width``
    seconds counted from ``since`` (one bucket when None), route and
    release: one GROUP BY that reads each row's metadata once, with the
    duration's histogram bin among the groups."""
    dialect = conn.dialect
    froms, facts = _dialects.request_end_facts(dialect, traces)
    where = [
        traces.c.event_type == REQUEST_END,
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
    found: dict[Key, Figures] = {}
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
            unread = found.setdefault((start_of(b), name, ""), Figures())
            unread.unreadable += int(n)
            continue
        figures = found.setdefault((start_of(b), name, rel), Figures())
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
            figures = found.setdefault((start_of(b), name, rel), Figures())
            bin_key = sketch.key_of(key)
            db = figures.db_histogram
            db[bin_key] = db.get(bin_key, 0.0) + float(w)
    return found


def oldest(conn: sa.Connection, traces: sa.Table) -> dt.datetime | None:
    """When the oldest raw request end stored happened (None without any)."""
    found = conn.execute(
        sa.select(sa.func.min(traces.c.occurred_at)).where(
            traces.c.event_type == REQUEST_END
        )
    ).scalar()
    return None if found is None else _dialects.read_time(found)
