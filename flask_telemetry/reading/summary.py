"""Per-route request figures from ``http_request_end``: counts and percentiles."""

from __future__ import annotations

import itertools
import typing as t

import sqlalchemy as sa

from ..storage.vocabulary import EventType
from . import _dialects, _window
from . import sample as _sample
from .events import Bind, connection
from .percentiles import Walk
from .records import RouteSummary, Summaries

#: Rows fetched at a time when the durations are streamed.
_STREAM_ROWS = 5000

#: Per route: rows, weight, weighted ms, max ms, errors, 4xx, slow (weighted),
#: then the three percentiles, then of the rows with database figures: their
#: weight, weighted statements, weighted db ms and weighted ms.
_Figures: t.TypeAlias = tuple[t.Any, ...]


def request_summary(
    bind: Bind,
    table: sa.Table,
    *,
    since: _window.TimeBound,
    until: _window.TimeBound | None = None,
    route: str | None = None,
    release: str | None = None,
    sample: _sample.Sample | None = None,
) -> Summaries:
    """One :class:`RouteSummary` per endpoint with requests in the window.

    Read from the ``http_request_end`` rows with ``since <= occurred_at <
    until``; ``route`` (a name or a glob such as ``api.*``) keeps the
    matching endpoints; ``release`` keeps the requests of one release (``""``
    those of none). Ordered by total time (requests x mean) descending.

    A row whose metadata has ``sample_rate`` below 1 stands for
    ``1/sample_rate`` requests: counts, mean and percentiles weigh it so
    (see :mod:`flask_telemetry.reading.percentiles` for the exact method).
    Without sampled rows the percentiles are the linear ones of
    ``percentile_cont``: computed by PostgreSQL itself, in the same query as
    the counts; on SQLite and MySQL/MariaDB (and for sampled rows
    everywhere) over the durations streamed in order, never held in memory.

    With a :class:`~flask_telemetry.reading.sample.Sample`, only its rows
    are read: counts are scaled up to the window, ``rows`` is the rows read,
    means and percentiles are the sample's (estimates), ``max_ms`` the
    sample's largest.

    Rows whose figures cannot be read (written by anything but the request
    hooks) are in no figure; the list's ``unreadable`` counts them.
    """
    with connection(bind) as conn:
        dialect = conn.dialect
        froms, facts = _dialects.request_end_facts(dialect, table)
        where = [
            table.c.event_type == EventType.HTTP_REQUEST_END.value,
            *_sample.time_filters(dialect, table, since, until, sample),
        ]
        if route is not None:
            where.append(_window.route_filter(table, route))
        if release is not None:
            # Read from the metadata: the rows of other releases are left out
            # of the count of unreadable rows too.
            where.append(sa.func.coalesce(facts["release"], "") == release)
        # MySQL/MariaDB stream a sample too: its rows sorted once cost less
        # than the GROUP BY and then the sorted durations (0.39 s against
        # 0.53 s for 10,000 rows of a week).
        if dialect.name == "sqlite" or (
            sample is not None and _dialects.is_mysql(dialect)
        ):
            figures = _streamed(conn, table, froms, facts, where)
        else:
            figures = _grouped(conn, table, froms, facts, where)
        # The rows left out: all the window's request ends (counted from
        # the indexes, no metadata read unless a release is asked for) less
        # those read.
        stored = conn.execute(
            sa.select(sa.func.count())
            .select_from(*(froms if release is not None else [table]))
            .where(*where)
        ).scalar_one()
        db_p95 = _db_percentile(conn, table, froms, facts, where, figures)
    scale = _sample.scale(sample)
    found = [
        _summary(name, row, scale, db_p95.get(name)) for name, row in figures.items()
    ]
    found.sort(key=lambda s: (-s.requests * s.mean_ms, s.route_name or ""))
    read = sum(s.rows for s in found)
    return Summaries(found, unreadable=max(int(stored) - read, 0))


def _summary(
    name: str | None, row: _Figures, scale: float, db_p95: float | None
) -> RouteSummary:
    rows, total, weighted_ms, max_ms, errors, client_errors, slow = row[:7]
    total = float(total)
    p50, p95, p99 = row[7:10]
    db_weight, db_count, db_ms, db_route_ms = (float(v or 0) for v in row[10:14])
    db: dict[str, t.Any] = {}
    if db_weight > 0:
        db = {
            "db_requests": round(db_weight * scale),
            "mean_db_count": db_count / db_weight,
            "mean_db_ms": db_ms / db_weight,
            "p95_db_ms": db_p95,
            "db_share": min(db_ms / db_route_ms, 1.0) if db_route_ms > 0 else 0.0,
        }
    return RouteSummary(
        **db,
        route_name=name,
        requests=round(total * scale),
        errors=round(float(errors) * scale),
        client_errors=round(float(client_errors) * scale),
        error_rate=float(errors) / total,
        slow=round(float(slow) * scale),
        mean_ms=float(weighted_ms) / total,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(max_ms),
        rows=int(rows),
    )


def _db_percentile(
    conn: sa.Connection,
    table: sa.Table,
    froms: list[sa.FromClause],
    facts: dict[str, sa.ColumnElement[t.Any]],
    where: list[sa.ColumnElement[bool]],
    figures: dict[str | None, _Figures],
) -> dict[str | None, float]:
    """Each route's p95 of database time, from the ``db_ms`` of its rows
    with database figures streamed in order; no query when no route has
    any (the integration is off)."""
    weights = {name: float(row[10]) for name, row in figures.items() if row[10]}
    if not weights:
        return {}
    route = table.c.route_name
    query = (
        sa.select(route, facts["db_ms"], facts["sample_rate"])
        .select_from(*froms)
        .where(*where, facts["db"])
        .order_by(route, facts["db_ms"])
    )
    result = conn.execution_options(
        stream_results=True, yield_per=_STREAM_ROWS
    ).execute(query)
    found: dict[str | None, float] = {}
    key = _route_key(conn.dialect)
    p95 = _dialects.FRACTIONS.index(0.95)
    try:
        for name, rows in itertools.groupby(result, key=key):
            if name not in weights:
                continue
            walk = Walk(weights[name], _dialects.FRACTIONS)
            for _, ms, rate in rows:
                weight = 1.0 / rate if rate is not None and 0 < rate < 1 else 1.0
                if walk.add(float(ms), weight):
                    break
            found[name] = float(walk.result()[p95])
    finally:
        result.close()
    return found


def _weight(rate: sa.ColumnElement[t.Any]) -> sa.ColumnElement[t.Any]:
    return sa.case((sa.and_(rate > 0, rate < 1), 1.0 / rate), else_=sa.literal(1.0))


def _grouped(
    conn: sa.Connection,
    table: sa.Table,
    froms: list[sa.FromClause],
    facts: dict[str, sa.ColumnElement[t.Any]],
    where: list[sa.ColumnElement[bool]],
) -> dict[str | None, _Figures]:
    """PostgreSQL and MySQL/MariaDB: the counts in one GROUP BY.

    On PostgreSQL percentile_cont comes in the same query. Elsewhere, and
    with sampled rows in the window, the durations are then streamed in
    order, with only the two columns the percentiles need: on MySQL the
    driver's decoding of each value is the largest cost.
    """
    where = [*where, facts["readable"]]
    route = table.c.route_name
    duration = facts["duration_ms"]
    rate = facts["sample_rate"]
    weight = _weight(rate)
    failed = sa.or_(facts["status"] >= 500, facts["exception"])
    client = sa.and_(
        facts["status"] >= 400, facts["status"] < 500, sa.not_(facts["exception"])
    )
    in_database = _dialects.has_percentile_cont(conn.dialect)
    percentiles = _dialects.percentile_columns(duration) if in_database else []
    query = (
        sa.select(
            route,
            sa.func.count(),
            sa.func.sum(weight),
            sa.func.sum(weight * duration),
            sa.func.max(duration),
            sa.func.sum(sa.case((failed, weight), else_=0)),
            sa.func.sum(sa.case((client, weight), else_=0)),
            sa.func.sum(sa.case((facts["slow"], weight), else_=0)),
            sa.func.sum(sa.case((sa.and_(rate > 0, rate < 1), 1), else_=0)),
            sa.func.sum(sa.case((facts["db"], weight), else_=0)),
            sa.func.sum(sa.case((facts["db"], weight * facts["db_count"]), else_=0)),
            sa.func.sum(sa.case((facts["db"], weight * facts["db_ms"]), else_=0)),
            sa.func.sum(sa.case((facts["db"], weight * duration), else_=0)),
            *percentiles,
        )
        .select_from(*froms)
        .where(*where)
        .group_by(route)
    )
    rows = {row[0]: tuple(row[1:]) for row in conn.execute(query)}
    if in_database and not any(row[7] for row in rows.values()):
        return {name: row[:7] + row[12:15] + row[8:12] for name, row in rows.items()}
    weights = {name: float(row[1]) for name, row in rows.items()}
    walked = _percentiles(conn, table, froms, facts, where, weights)
    return {name: row[:7] + walked[name] + row[8:12] for name, row in rows.items()}


def _percentiles(
    conn: sa.Connection,
    table: sa.Table,
    froms: list[sa.FromClause],
    facts: dict[str, sa.ColumnElement[t.Any]],
    where: list[sa.ColumnElement[bool]],
    weights: dict[str | None, float],
) -> dict[str | None, tuple[float, ...]]:
    """Each route's percentiles from its durations streamed in order, placed
    with the routes' total ``weights``; the rows are never kept."""
    route = table.c.route_name
    duration = facts["duration_ms"]
    query = (
        sa.select(route, duration, facts["sample_rate"])
        .select_from(*froms)
        .where(*where)
        .order_by(route, duration)
    )
    result = conn.execution_options(
        stream_results=True, yield_per=_STREAM_ROWS
    ).execute(query)
    found: dict[str | None, tuple[float, ...]] = {}
    key = _route_key(conn.dialect)
    try:
        for name, rows in itertools.groupby(result, key=key):
            walk = Walk(weights[name], _dialects.FRACTIONS)
            for _, ms, rate in rows:
                weight = 1.0 / rate if rate is not None and 0 < rate < 1 else 1.0
                if walk.add(float(ms), weight):
                    break  # groupby skips the rest of the route's rows
            found[name] = tuple(walk.result())
    finally:
        result.close()
    return found


def _streamed(
    conn: sa.Connection,
    table: sa.Table,
    froms: list[sa.FromClause],
    facts: dict[str, sa.ColumnElement[t.Any]],
    where: list[sa.ColumnElement[bool]],
) -> dict[str | None, _Figures]:
    """SQLite: one pass over the rows in duration order.

    Each row carries its route's total weight (a window sum, which the
    database computes while it sorts), needed to place the percentiles
    before the route's rows are read.
    """
    route = table.c.route_name
    facts_query = (
        sa.select(
            route.label("route_name"),
            facts["duration_ms"].label("ms"),
            facts["sample_rate"].label("rate"),
            facts["status"].label("status"),
            facts["exception"].label("exception"),
            facts["slow"].label("slow"),
            facts["db_count"].label("db_count"),
            facts["db_ms"].label("db_ms"),
        )
        .select_from(*froms)
        .where(*where)  # the duration's NULL check is outside: parsed once
        .subquery("rq")
    )
    c = facts_query.c
    total = sa.func.sum(_weight(c.rate)).over(
        partition_by=c.route_name, order_by=c.ms, rows=(None, None)
    )
    query = (
        sa.select(
            c.route_name,
            c.ms,
            c.rate,
            c.status,
            c.exception,
            c.slow,
            total,
            c.db_count,
            c.db_ms,
        )
        .where(c.ms.is_not(None), c.status.is_not(None))
        .order_by(c.route_name, c.ms)
    )
    return _read(conn, query)


def _read(conn: sa.Connection, query: sa.Select[t.Any]) -> dict[str | None, _Figures]:
    """Stream ``query``'s rows and compute each route's figures, its total
    weight in the last column of each row; never keep the rows."""
    result = conn.execution_options(
        stream_results=True, yield_per=_STREAM_ROWS
    ).execute(query)
    found: dict[str | None, _Figures] = {}
    try:
        for name, group in itertools.groupby(result, key=_route_key(conn.dialect)):
            rows = iter(group)
            head = next(rows)
            found[name] = _figures(itertools.chain((head,), rows), float(head[6]))
    finally:
        result.close()
    return found


def _figures(rows: t.Iterable[t.Any], total_weight: float) -> _Figures:
    """One route's figures from its rows ``(route, ms, rate, status,
    exception, slow, total weight, db_count, db_ms)`` in duration order."""
    walk = Walk(total_weight, _dialects.FRACTIONS)
    count = 0
    weight_sum = weighted_ms = errors = client_errors = slow = 0.0
    db_weight = db_count = db_ms = db_route_ms = 0.0
    last = 0.0
    for _, ms, rate, status, exception, is_slow, _, statements, in_db in rows:
        ms = float(ms)
        weight = 1.0 / rate if rate is not None and 0 < rate < 1 else 1.0
        count += 1
        weight_sum += weight
        weighted_ms += weight * ms
        last = ms
        status = status or 0
        if exception or status >= 500:
            errors += weight
        elif status >= 400:
            client_errors += weight
        if is_slow:
            slow += weight
        if statements is not None and in_db is not None:
            db_weight += weight
            db_count += weight * statements
            db_ms += weight * float(in_db)
            db_route_ms += weight * ms
        walk.add(ms, weight)
    return (
        count,
        weight_sum,
        weighted_ms,
        last,
        errors,
        client_errors,
        slow,
        *walk.result(),
        db_weight,
        db_count,
        db_ms,
        db_route_ms,
    )


def _route_key(dialect: sa.Dialect) -> t.Callable[[t.Any], str | None]:
    """The route of a streamed row as GROUP BY or PARTITION BY saw it.

    MySQL and MariaDB compare with the column's collation, case-insensitive
    by default: endpoints that differ only in case are one group there, and
    their rows come sorted together. They are reported under the first
    spelling met.
    """
    if not _dialects.is_mysql(dialect):
        return lambda row: row[0]
    spellings: dict[str, str] = {}

    def key(row: t.Any) -> str | None:
        name: str | None = row[0]
        return name if name is None else spellings.setdefault(name.casefold(), name)

    return key
