"""The raw request ends read as rollup buckets: the source every bucket is
folded from, and the part of a window that is not folded yet.

:func:`buckets` groups the ``http_request_end`` rows of a range by bucket,
route, release and histogram bin in the database, and sums each group's
figures there; Python only adds the groups of a bucket together.
"""

from __future__ import annotations

import dataclasses
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
    groups = _groups(
        conn,
        traces,
        since,
        until,
        width=width,
        route=route,
        release=release,
        unmatched=unmatched,
    )
    start_of = _starts(since, width)
    found: dict[Key, Figures] = {}
    query = _figures_query(groups, readable_only=release is not None)
    if _add_figures(found, conn.execute(query), start_of):
        # The database milliseconds' histogram: a second pass, only where
        # the SQLAlchemy integration recorded figures.
        rows = conn.execute(_db_histogram_query(groups))
        _add_db_histograms(found, rows, start_of)
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class _Groups:
    """What both of :func:`buckets`' queries read and group by."""

    #: The FROM list and the request-end figures of a row
    #: (:func:`.._dialects.request_end_facts`).
    froms: list[sa.FromClause]
    facts: dict[str, sa.ColumnElement[t.Any]]
    #: The rows of the range, route and release.
    where: list[sa.ColumnElement[bool]]
    #: The first group keys: the bucket's index, the route and the release.
    keys: tuple[sa.ColumnElement[t.Any], ...]
    #: A row's weight: 1 / its sample rate.
    weight: sa.ColumnElement[t.Any]


def _groups(
    conn: sa.Connection,
    traces: sa.Table,
    since: dt.datetime,
    until: dt.datetime,
    *,
    width: int | None,
    route: str | None,
    release: str | None,
    unmatched: bool,
) -> _Groups:
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
    keys: tuple[sa.ColumnElement[t.Any], ...] = (
        bucket.label("bucket"),
        sa.func.coalesce(traces.c.route_name, "").label("route"),
        release_of.label("release"),
    )
    if dialect.name == "postgresql":
        froms, facts, where, keys = _once_per_row(froms, facts, where, keys)
    rate = facts["sample_rate"]
    return _Groups(
        froms=froms,
        facts=facts,
        where=where,
        keys=keys,
        weight=sa.case((rate > 0, 1.0 / rate), else_=1.0),
    )


def _once_per_row(
    froms: list[sa.FromClause],
    facts: dict[str, sa.ColumnElement[t.Any]],
    where: list[sa.ColumnElement[bool]],
    keys: tuple[sa.ColumnElement[t.Any], ...],
) -> tuple[
    list[sa.FromClause],
    dict[str, sa.ColumnElement[t.Any]],
    list[sa.ColumnElement[bool]],
    tuple[sa.ColumnElement[t.Any], ...],
]:
    """The group keys and facts of each row computed once, in a subquery
    the grouping reads from (PostgreSQL).

    Each fact is a checked cast (a regular expression, then a range) that
    the sums use several times over; PostgreSQL pulls a plain subquery up
    into the query around it and evaluates the expression at every use,
    which made the grouping cost about 90 microseconds a row. ``OFFSET 0``
    keeps the subquery as it is, so that each is evaluated once a row."""
    names = [key.name for key in keys if isinstance(key, sa.Label)]
    inner = (
        sa.select(*keys, *(value.label(f"fact_{n}") for n, value in facts.items()))
        .select_from(*froms)
        .where(*where)
        .offset(0)
        .subquery("request_ends")
    )
    return (
        [inner],
        {name: inner.c[f"fact_{name}"] for name in facts},
        [],
        tuple(inner.c[name] for name in names),
    )


def _figures_query(groups: _Groups, *, readable_only: bool) -> sa.Select[t.Any]:
    """Per bucket, route, release and duration bin: the rows, their weight,
    and the weighted sums of :class:`.buckets.Figures` (see
    :func:`_add_figures` for the columns' order)."""
    facts, weight = groups.facts, groups.weight
    duration = facts["duration_ms"]
    failed = sa.or_(facts["status"] >= 500, facts["exception"])
    client = sa.and_(
        facts["status"] >= 400, facts["status"] < 500, sa.not_(facts["exception"])
    )

    def weighted(
        condition: sa.ColumnElement[t.Any], value: sa.ColumnElement[t.Any] = weight
    ) -> sa.ColumnElement[t.Any]:
        return sa.func.sum(sa.case((condition, value), else_=0.0))

    db = facts["db"]
    return (
        sa.select(
            *groups.keys,
            sketch.sql_bin(duration).label("bin"),
            sa.func.count(),
            sa.func.sum(weight),
            sa.func.sum(weight * duration),
            sa.func.max(duration),
            weighted(failed),
            weighted(client),
            weighted(facts["slow"]),
            weighted(db),
            weighted(db, weight * facts["db_count"]),
            weighted(db, weight * facts["db_ms"]),
            weighted(db, weight * duration),
            # Rows left out (figures unreadable) are counted in the same
            # pass, in groups of their own, under the route's "no release"
            # row; with a release asked for, they are left out.
            sa.case((facts["readable"], 1), else_=0),
        )
        .select_from(*groups.froms)
        .where(*groups.where, *([facts["readable"]] if readable_only else []))
        .group_by(sa.text("1, 2, 3, 4, 16"))
    )


def _db_histogram_query(groups: _Groups) -> sa.Select[t.Any]:
    """Per bucket, route, release and bin of the database milliseconds: the
    weight of the rows that carry database figures."""
    facts = groups.facts
    return (
        sa.select(
            *groups.keys,
            sketch.sql_bin(facts["db_ms"]).label("bin"),
            sa.func.sum(groups.weight),
        )
        .select_from(*groups.froms)
        .where(*groups.where, facts["readable"], facts["db"])
        .group_by(sa.text("1, 2, 3, 4"))
    )


def _starts(since: dt.datetime, width: int | None) -> t.Callable[[t.Any], dt.datetime]:
    """The start of the bucket of each index a query returns (``since`` for
    all when ``width`` is None), each computed once."""
    if width is None:
        return lambda index: since
    size = width
    starts: dict[t.Any, dt.datetime] = {}

    def start_of(index: t.Any) -> dt.datetime:
        start = starts.get(index)
        if start is None:
            start = starts[index] = since + dt.timedelta(seconds=int(index) * size)
        return start

    return start_of


def _add_figures(
    found: dict[Key, Figures],
    rows: t.Iterable[t.Any],
    start_of: t.Callable[[t.Any], dt.datetime],
) -> bool:
    """Add the groups of :func:`_figures_query` to ``found`` (the unreadable
    rows' groups to their route's "no release" figures); whether any group
    holds database figures."""
    with_db = False
    for row in rows:
        index, name, release, bin_ = row[:4]
        sums, db_sums, readable = row[4:11], row[11:15], row[15]
        if not readable:
            unread = found.setdefault((start_of(index), name, ""), Figures())
            unread.unreadable += int(sums[0])
            continue
        figures = found.setdefault((start_of(index), name, release), Figures())
        _add_sums(figures, bin_, sums)
        if db_sums[0]:
            with_db = True
            _add_db_sums(figures, db_sums)
    return with_db


def _add_sums(figures: Figures, bin_: t.Any, sums: t.Sequence[t.Any]) -> None:
    """Add one group's rows, weight, weighted duration, longest duration,
    errors, client errors and slow requests, and its weight to its bin."""
    n, w, wd, top, err, cli, slow = sums
    figures.rows += int(n)
    figures.requests += float(w)
    figures.duration_sum += float(wd or 0.0)
    figures.duration_max = max(figures.duration_max, float(top or 0.0))
    figures.errors += float(err or 0.0)
    figures.client_errors += float(cli or 0.0)
    figures.slow += float(slow or 0.0)
    bin_key = sketch.key_of(bin_)
    figures.histogram[bin_key] = figures.histogram.get(bin_key, 0.0) + float(w)


def _add_db_sums(figures: Figures, sums: t.Sequence[t.Any]) -> None:
    """Add one group's requests with database figures (weighted), their
    statements, their milliseconds in the database and in all."""
    db_w, db_n, db_ms, db_route = sums
    figures.db_requests += float(db_w)
    figures.db_count += float(db_n or 0.0)
    figures.db_ms += float(db_ms or 0.0)
    figures.db_route_ms += float(db_route or 0.0)


def _add_db_histograms(
    found: dict[Key, Figures],
    rows: t.Iterable[t.Any],
    start_of: t.Callable[[t.Any], dt.datetime],
) -> None:
    """Add the groups of :func:`_db_histogram_query` to ``found``."""
    for index, name, release, bin_, w in rows:
        figures = found.setdefault((start_of(index), name, release), Figures())
        bin_key = sketch.key_of(bin_)
        db = figures.db_histogram
        db[bin_key] = db.get(bin_key, 0.0) + float(w)


def oldest(conn: sa.Connection, traces: sa.Table) -> dt.datetime | None:
    """When the oldest raw request end stored happened (None without any)."""
    found = conn.execute(
        sa.select(sa.func.min(traces.c.occurred_at)).where(
            traces.c.event_type == REQUEST_END
        )
    ).scalar()
    return None if found is None else _dialects.read_time(found)
