"""Per-route request figures from ``http_request_end``: counts and percentiles."""

from __future__ import annotations

import itertools
import typing as t

import sqlalchemy as sa

from ..storage import EventType
from . import _dialects, _window
from .events import Bind, connection
from .percentiles import weighted_percentiles
from .records import RouteSummary

#: Rows fetched at a time when the durations are streamed.
_STREAM_ROWS = 5000


def request_summary(
    bind: Bind,
    table: sa.Table,
    *,
    since: _window.TimeBound,
    until: _window.TimeBound | None = None,
    route: str | None = None,
) -> list[RouteSummary]:
    """One :class:`RouteSummary` per endpoint with requests in the window.

    Read from the ``http_request_end`` rows with ``since <= occurred_at <
    until``; ``route`` (a name or a glob such as ``api.*``) keeps the
    matching endpoints. Ordered by total time (requests x mean) descending.

    A row whose metadata has ``sample_rate`` below 1 stands for
    ``1/sample_rate`` requests: counts, mean and percentiles weigh it so
    (see :mod:`flask_telemetry.reading.percentiles` for the exact method).
    Without sampled rows the percentiles are the linear ones of
    ``percentile_cont``: computed by PostgreSQL itself, in the same query as
    the counts; on SQLite and MySQL/MariaDB (and for sampled rows
    everywhere) over the durations streamed in order, never held in memory.
    """
    with connection(bind) as conn:
        dialect = conn.dialect
        froms, facts = _dialects.request_end_facts(dialect, table)
        duration = facts["duration_ms"]
        rate = facts["sample_rate"]
        sampled = sa.and_(rate > 0, rate < 1)
        weight = sa.case((sampled, 1.0 / rate), else_=sa.literal(1.0))
        where = [
            table.c.event_type == EventType.HTTP_REQUEST_END.value,
            *_window.time_filters(dialect, table, since, until),
            duration.is_not(None),
        ]
        if route is not None:
            where.append(_window.route_filter(table, route))
        failed = sa.or_(facts["status"] >= 500, facts["exception"])
        client = sa.and_(
            facts["status"] >= 400, facts["status"] < 500, sa.not_(facts["exception"])
        )
        aggregates: list[sa.FunctionElement[t.Any]] = [
            sa.func.count(),
            sa.func.sum(weight),
            sa.func.sum(weight * duration),
            sa.func.max(duration),
            sa.func.sum(sa.case((failed, weight), else_=0)),
            sa.func.sum(sa.case((client, weight), else_=0)),
            sa.func.sum(sa.case((facts["slow"], weight), else_=0)),
            sa.func.sum(sa.case((sampled, 1), else_=0)),
        ]
        query = _totals(dialect, table.c.route_name, aggregates, duration)
        rows = conn.execute(query.select_from(*froms).where(*where)).all()
        routes = {row[0]: row for row in rows}
        if not routes:
            return []
        if any(row[8] for row in rows) or not _dialects.has_percentile_cont(dialect):
            weights = {name: float(row[2]) for name, row in routes.items()}
            percentiles = _streamed(
                conn, froms, where, table, duration, weight, weights
            )
        else:  # computed by the database, in the same query
            percentiles = {name: tuple(row[9:12]) for name, row in routes.items()}
    found = []
    for name, row in routes.items():
        rows, total, weighted_ms, max_ms, errors, client_errors, slow = row[1:8]
        total = float(total)
        p50, p95, p99 = percentiles[name]
        found.append(
            RouteSummary(
                route_name=name,
                requests=round(total),
                errors=round(float(errors)),
                client_errors=round(float(client_errors)),
                error_rate=float(errors) / total,
                slow=round(float(slow)),
                mean_ms=float(weighted_ms) / total,
                p50_ms=float(p50),
                p95_ms=float(p95),
                p99_ms=float(p99),
                max_ms=float(max_ms),
                rows=int(rows),
            )
        )
    found.sort(key=lambda s: (-s.requests * s.mean_ms, s.route_name or ""))
    return found


def _totals(
    dialect: sa.Dialect,
    route: sa.ColumnElement[t.Any],
    aggregates: list[sa.FunctionElement[t.Any]],
    duration: sa.ColumnElement[t.Any],
) -> sa.Select[t.Any]:
    """One row per route: the aggregates, then on PostgreSQL the percentiles."""
    columns: list[sa.ColumnElement[t.Any]] = [*aggregates]
    if _dialects.has_percentile_cont(dialect):
        columns += _dialects.percentile_columns(duration)
    return sa.select(route, *columns).group_by(route)


def _streamed(
    conn: sa.Connection,
    froms: list[sa.FromClause],
    where: list[sa.ColumnElement[bool]],
    table: sa.Table,
    duration: sa.ColumnElement[t.Any],
    weight: sa.ColumnElement[t.Any],
    weights: dict[str | None, float],
) -> dict[str | None, tuple[float, ...]]:
    route = table.c.route_name
    query = (
        sa.select(route, duration, weight)
        .select_from(*froms)
        .where(*where)
        .order_by(route, duration)
    )
    result = conn.execution_options(
        stream_results=True, yield_per=_STREAM_ROWS
    ).execute(query)
    found: dict[str | None, tuple[float, ...]] = {}
    try:
        for name, rows in itertools.groupby(result, key=lambda row: row[0]):
            found[name] = tuple(
                weighted_percentiles(
                    ((float(r[1]), float(r[2])) for r in rows),
                    weights[name],
                    _dialects.FRACTIONS,
                )
            )
    finally:
        result.close()
    return found
