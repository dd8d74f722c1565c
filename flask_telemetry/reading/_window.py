"""Time windows and filters shared by the queries."""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa

from ..storage.vocabulary import Severity
from . import _dialects

#: What ``since`` and ``until`` accept: an aware datetime (a naive one is
#: taken as UTC), or a timedelta counted back from now.
TimeBound: t.TypeAlias = dt.datetime | dt.timedelta

_SEVERITIES = [s.value for s in Severity]


def resolve(
    value: TimeBound | None, now: dt.datetime | None = None
) -> dt.datetime | None:
    """``value`` as an aware UTC datetime (None stays None)."""
    if value is None:
        return None
    try:
        if isinstance(value, dt.timedelta):
            return (now or dt.datetime.now(dt.UTC)) - value
        if not isinstance(value, dt.datetime):
            raise TypeError(
                f"A time bound must be a datetime or a timedelta, not {value!r}."
            )
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    except OverflowError:
        # A timedelta reaching before year 1, an offset past year 9999.
        raise ValueError(f"The time bound {value!r} is out of range.") from None


def time_filters(
    dialect: sa.Dialect,
    table: sa.Table,
    since: TimeBound | None,
    until: TimeBound | None,
    *,
    index: bool = True,
) -> list[sa.ColumnElement[bool]]:
    """``since <= occurred_at < until``, each side when given.

    ``index=False`` (SQLite): compare ``+occurred_at``, which SQLite's
    planner does not look up in an index.
    """
    now = dt.datetime.now(dt.UTC)
    clauses: list[sa.ColumnElement[bool]] = []
    start = resolve(since, now)
    end = resolve(until, now)
    column: sa.ColumnElement[t.Any] = table.c.occurred_at
    if not index:
        preparer = dialect.identifier_preparer
        name = f"{preparer.format_table(table)}.{preparer.quote('occurred_at')}"
        column = sa.literal_column(f"+{name}", table.c.occurred_at.type)
    if start is not None:
        clauses.append(column >= _dialects.bind_time(dialect, start))
    if end is not None:
        clauses.append(column < _dialects.bind_time(dialect, end))
    return clauses


def severities_from(min_severity: Severity | str) -> list[str]:
    """The severity values at or above ``min_severity``."""
    value = min_severity.value if isinstance(min_severity, Severity) else min_severity
    if value not in _SEVERITIES:
        raise ValueError(
            f"min_severity must be one of {', '.join(_SEVERITIES)}, not "
            f"{min_severity!r}."
        )
    return _SEVERITIES[_SEVERITIES.index(value) :]


#: The ids and actor ids a BIGINT column holds.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


def matchable(text: str) -> bool:
    """Whether a stored text can equal ``text``: none holds NUL (PostgreSQL
    refuses one even as a parameter, and the writer never stores one)."""
    return "\x00" not in text


def no_row() -> sa.ColumnElement[bool]:
    """A condition no row meets. Not ``sa.false()``: SQLAlchemy folds the
    whole WHERE into it, dropping the join conditions next to it."""
    return sa.literal_column("1") == sa.literal_column("0")


def route_filter(table: sa.Table, route: str) -> sa.ColumnElement[bool]:
    """Endpoints matching ``route``: a name, or a glob with ``*`` and ``?``.

    A glob becomes a LIKE pattern with ``%`` and ``_`` escaped, bound as a
    parameter; a name without wildcards is compared with ``=``. A ``route``
    holding NUL matches nothing.
    """
    if not matchable(route):
        return no_row()
    if "*" not in route and "?" not in route:
        return table.c.route_name == route
    pattern = "".join(
        "%" if char == "*" else "_" if char == "?" else _escape(char) for char in route
    )
    return table.c.route_name.like(pattern, escape="/")


def _escape(char: str) -> str:
    # "/" as the escape character: a backslash means different things in
    # MySQL's string literals and elsewhere.
    return "/" + char if char in "%_/" else char
