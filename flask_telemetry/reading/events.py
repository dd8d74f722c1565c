"""Events newest first, paged by id; counts per event type and severity."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import typing as t

import sqlalchemy as sa

from ..storage import row
from ..storage.vocabulary import Severity
from . import _dialects, _window
from . import sample as _sample
from .records import EventCount, EventRecord

#: Bind: an Engine (a connection is taken for the query) or a Connection.
Bind: t.TypeAlias = "sa.Engine | sa.Connection"

#: The most rows one call returns.
MAX_LIMIT = 10_000


def events(
    bind: Bind,
    table: sa.Table,
    *,
    since: _window.TimeBound | None = None,
    until: _window.TimeBound | None = None,
    event_type: str | t.Iterable[str] | None = None,
    min_severity: Severity | str | None = None,
    severity: Severity | str | None = None,
    route: str | None = None,
    request_id: str | None = None,
    actor_type: str | None = None,
    actor_id: int | None = None,
    limit: int = 100,
    before_id: int | None = None,
    after_id: int | None = None,
) -> list[EventRecord]:
    """Events matching every filter given, newest (highest id) first.

    ``limit`` rows at most (1 to :data:`MAX_LIMIT`); pass the last record's
    id as ``before_id`` for the next page: paging is by key, so a page costs
    the same however deep it is and rows written meanwhile neither shift
    nor repeat a page. ``after_id`` keeps the rows above an id (to poll for
    new ones). ``route`` is an endpoint name or a glob (``api.*``).
    ``event_type`` is a value or several; ``severity`` keeps one severity
    exactly, ``min_severity`` that one and those above it.

    Any value a filter can be given answers, never raises a database error:
    an id outside the BIGINT range and a text holding NUL (which no row
    holds) match no row, or every row for ``before_id`` above the range and
    ``after_id`` below it. An id that is not an integer, an unknown
    severity and a ``limit`` out of range are a ``ValueError`` naming the
    argument.
    """
    _check(
        limit,
        integers=(
            ("actor_id", actor_id),
            ("before_id", before_id),
            ("after_id", after_id),
        ),
        severities=(min_severity, severity),
    )
    types = None if event_type is None else _matchable_types(event_type)
    texts = [str(v) for v in (route, request_id, actor_type) if v is not None]
    if _matches_nothing(types, texts, actor_id, before_id, after_id):
        return []
    before_id, after_id = _open_ends(before_id, after_id)
    with connection(bind) as conn:
        walk = (
            (since is not None or until is not None)
            and request_id is None
            and _walk_ids(conn, table, until)
        )
        clauses = _window.time_filters(
            conn.dialect, table, since, until, index=not walk
        )
        clauses += _filters(
            table,
            (
                (types, _type_filter),
                (min_severity, _min_severity_filter),
                (severity, lambda c, v: c.severity == _value(v)),
                (route, lambda c, v: _window.route_filter(table, v)),
                (request_id, lambda c, v: c.request_id == v),
                (actor_type, lambda c, v: c.actor_type == _value(v)),
                (actor_id, lambda c, v: c.actor_id == v),
                (before_id, lambda c, v: c.id < v),
                (after_id, lambda c, v: c.id > v),
            ),
        )
        query = (
            sa.select(*_columns(table))
            .where(*clauses)
            .order_by(table.c.id.desc())
            .limit(limit)
        )
        return [_record(row) for row in conn.execute(query)]


def _is_integer(value: object) -> t.TypeGuard[int]:
    """Whether ``value`` is an integer (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check(
    limit: object,
    *,
    integers: t.Iterable[tuple[str, object]],
    severities: t.Iterable[Severity | str | None],
) -> None:
    """A ``ValueError`` naming the first argument of :func:`events` out of
    its domain: ``limit``, then each of ``integers`` (name, value) given
    that is no integer, then each of ``severities`` given that is unknown."""
    if not _is_integer(limit) or not (1 <= limit <= MAX_LIMIT):
        raise ValueError(
            f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r}."
        )
    for key, value in integers:
        if value is not None and not _is_integer(value):
            raise ValueError(f"{key} must be an integer, not {value!r}.")
    for severity in severities:
        if severity is not None:
            _window.severities_from(severity)  # a known value, or ValueError


def _matchable_types(event_type: str | t.Iterable[str]) -> list[str]:
    """The event types asked for, but those holding NUL: they match nothing,
    the others still can."""
    return [v for v in _values(event_type) if _window.matchable(v)]


def _matches_nothing(
    types: list[str] | None,
    texts: t.Iterable[str],
    actor_id: int | None,
    before_id: int | None,
    after_id: int | None,
) -> bool:
    """Whether no row can match: no event type left, a text that holds NUL,
    an actor id outside the BIGINT range, or ids asked beyond its ends
    (``before_id`` at its lowest or below, ``after_id`` at its highest or
    above)."""
    return (
        types == []
        or not all(_window.matchable(text) for text in texts)
        or (actor_id is not None and not _in_bigint(actor_id))
        or (before_id is not None and before_id <= _window.BIGINT_MIN)
        or (after_id is not None and after_id >= _window.BIGINT_MAX)
    )


def _open_ends(
    before_id: int | None, after_id: int | None
) -> tuple[int | None, int | None]:
    """The id bounds to filter by: none for a ``before_id`` above the BIGINT
    range or an ``after_id`` below it (every row is within it)."""
    if before_id is not None and before_id > _window.BIGINT_MAX:
        before_id = None
    if after_id is not None and after_id < _window.BIGINT_MIN:
        after_id = None
    return before_id, after_id


_Columns: t.TypeAlias = "sa.ColumnCollection[str, sa.Column[t.Any]]"
#: A filter of :func:`events`: the clause of a value given, from the table's
#: columns (or None for a value that keeps every row).
_Filter: t.TypeAlias = t.Callable[[_Columns, t.Any], "sa.ColumnElement[bool] | None"]


def _filters(
    table: sa.Table, wanted: t.Iterable[tuple[object, _Filter]]
) -> list[sa.ColumnElement[bool]]:
    """The clauses of the filters whose value is given, in their order."""
    made = (
        to_clause(table.c, value) for value, to_clause in wanted if value is not None
    )
    return [clause for clause in made if clause is not None]


def _type_filter(c: _Columns, types: list[str]) -> sa.ColumnElement[bool]:
    """One event type, or any of several."""
    return c.event_type == types[0] if len(types) == 1 else c.event_type.in_(types)


def _min_severity_filter(
    c: _Columns, min_severity: Severity | str
) -> sa.ColumnElement[bool] | None:
    """The severities at or above ``min_severity`` (None: all of them)."""
    levels = _window.severities_from(min_severity)
    return c.severity.in_(levels) if len(levels) < len(Severity) else None


def event_counts(
    bind: Bind,
    table: sa.Table,
    *,
    since: _window.TimeBound,
    until: _window.TimeBound | None = None,
    sample: _sample.Sample | None = None,
    route: str | None = None,
) -> list[EventCount]:
    """How many events of each (event type, severity) the window holds.

    Most frequent first, then by event type and severity; ``route`` (a
    name or a glob) counts only the events of matching endpoints. With a
    :class:`~flask_telemetry.reading.sample.Sample`, counted on its rows and
    scaled up to the window (estimates).
    """
    scale = _sample.scale(sample)
    with connection(bind) as conn:
        clauses = _sample.time_filters(conn.dialect, table, since, until, sample)
        if route is not None:
            clauses = [*clauses, _window.route_filter(table, route)]
        count = sa.func.count().label("count")
        query = (
            sa.select(table.c.event_type, table.c.severity, count)
            .where(*clauses)
            .group_by(table.c.event_type, table.c.severity)
        )
        found = [
            EventCount(
                event_type=row[0], severity=row[1], count=round(int(row[2]) * scale)
            )
            for row in conn.execute(query)
        ]
    found.sort(key=lambda c: (-c.count, c.event_type, c.severity))
    return found


#: Rows newer than a window below which SQLite walks the ids down to it.
_NEWER_ROWS = 20_000


def _walk_ids(
    conn: sa.Connection, table: sa.Table, until: _window.TimeBound | None
) -> bool:
    """Whether SQLite should find a window's newest rows by walking the ids
    down from the newest, rather than through the ``occurred_at`` index.

    Its planner takes the index for any window, then sorts all of the
    window's rows by id: seconds for a week of a busy table. Walking the ids
    costs the rows newer than the window (none for a window that ends now)
    and those read until a page is full. Other databases choose by their
    statistics.
    """
    if conn.dialect.name != "sqlite":
        return False
    end = _window.resolve(until)
    if end is None:
        return True
    newer = (
        sa.select(sa.literal(1))
        .where(table.c.occurred_at >= _dialects.bind_time(conn.dialect, end))
        .limit(_NEWER_ROWS)
        .subquery()
    )
    count = conn.execute(sa.select(sa.func.count()).select_from(newer)).scalar_one()
    return int(count) < _NEWER_ROWS


#: The columns an :class:`EventRecord` holds, in its field order: ``id``,
#: then those of :data:`~..storage.row.COLUMNS` it has a field for.
_FIELDS = tuple(f.name for f in dataclasses.fields(EventRecord))
assert set(_FIELDS) <= {"id", *row.FIELDS}, _FIELDS


def _columns(table: sa.Table) -> list[sa.ColumnElement[t.Any]]:
    c = table.c
    return [
        # The JSON column as text, parsed by _metadata: a row written by
        # anything may hold text that is no JSON (SQLite keeps what it is
        # given).
        sa.cast(c[name], sa.Text).label(name)
        if name != "id" and row.BY_NAME[name].kind is dict
        else c[name]
        for name in _FIELDS
    ]


def _record_source() -> str:
    """The source of :func:`_record`, written out once from the fields (a
    page of events makes up to MAX_LIMIT records)."""
    made = []
    for i, name in enumerate(_FIELDS):
        kind = int if name == "id" else row.BY_NAME[name].kind
        if kind is int and name == "id":
            made.append(f"{name}=int(row[{i}])")
        elif kind is dt.datetime:
            made.append(f"{name}=_read_time(row[{i}])")
        elif kind is dict:
            made.append(f"{name}=_metadata(row[{i}])")
        else:
            made.append(f"{name}=row[{i}]")
    body = "".join(f"        {value},\n" for value in made)
    return f"def _record(row):\n    return EventRecord(\n{body}    )\n"


#: The most characters of a metadata text that is no JSON kept under "_raw".
RAW_CHARS = 1000


def _metadata(text: t.Any) -> dict[str, t.Any]:
    """A stored metadata text as a dict, whatever it holds.

    A JSON object is itself; JSON null or no value an empty dict; any other
    JSON value (a list, a string, a number) is kept as ``{"_raw": value}``,
    and a text that is no JSON as ``{"_raw": text}`` cut to
    :data:`RAW_CHARS`. NaN and Infinity are kept as their names, so that
    the record is always valid JSON again.
    """
    if text is None:
        return {}
    if isinstance(text, dict):  # a driver that parses JSON itself
        return text
    try:
        value = json.loads(text, parse_constant=str)
    except (TypeError, ValueError, RecursionError):
        return {"_raw": str(text)[:RAW_CHARS]}
    if value is None:
        return {}
    return value if isinstance(value, dict) else {"_raw": value}


def _in_bigint(value: int) -> bool:
    return _window.BIGINT_MIN <= value <= _window.BIGINT_MAX


def _value(value: t.Any) -> str:
    return str(getattr(value, "value", value))


def _values(value: str | t.Iterable[str]) -> list[str]:
    if isinstance(value, str):
        return [_value(value)]
    found = [_value(v) for v in value]
    if not found:
        raise ValueError("event_type must name at least one event type.")
    return found


@contextlib.contextmanager
def connection(bind: Bind) -> t.Iterator[sa.Connection]:
    """A connection from ``bind``: the one given, or a new one closed after."""
    if isinstance(bind, sa.Connection):
        yield bind
        return
    with bind.connect() as conn:
        yield conn


#: The :class:`EventRecord` of a row selected by :func:`_columns`.
_record: t.Callable[[t.Sequence[t.Any]], EventRecord] = row.define(
    "_record",
    _record_source(),
    {
        "EventRecord": EventRecord,
        "_read_time": _dialects.read_time,
        "_metadata": _metadata,
    },
)
