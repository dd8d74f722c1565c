"""One row of ``telemetry_traces``, declared once.

:data:`COLUMNS` is the declaration: name, Python type, length and
nullability of every column, in column order. The model's columns and the
schema's length limits are made from it; :class:`TraceEvent` (the storage
DTO) and the queued form are checked against it by ``tests/test_row.py``.
Adding a column is: a :class:`Column` here, the field on :class:`TraceEvent`,
the mapping that fills it (``domain/mapping.py``), a migration, and tests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
import typing as t


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """What a column holds. ``kind`` is the Python type of its values."""

    name: str
    kind: type
    nullable: bool
    #: Characters, for text columns.
    length: int | None = None
    #: Validated for every row (True) or once per distinct value in a batch.
    per_row: bool = False
    #: Has an index of its own.
    indexed: bool = False


#: The columns after ``id``, in column order.
COLUMNS: tuple[Column, ...] = (
    Column("actor_type", str, nullable=False, length=32),
    Column("actor_id", int, nullable=True),
    Column("event_type", str, nullable=False, length=64, indexed=True),
    Column("severity", str, nullable=False, length=16),
    Column("request_id", str, nullable=True, length=64, per_row=True, indexed=True),
    Column("route_name", str, nullable=True, length=255),
    Column("ip_address", str, nullable=True, length=45),
    Column("user_agent", str, nullable=True, length=512),
    Column("metadata", dict, nullable=True, per_row=True),
    Column("occurred_at", dt.datetime, nullable=False, per_row=True, indexed=True),
)

#: Column by name.
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}


def length(name: str) -> int:
    """The length of the text column ``name``."""
    size = BY_NAME[name].length
    assert size is not None, name
    return size


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TraceEvent:
    """A DB-aligned event: the values the writer inserts, already mapped.

    One field per column of :data:`COLUMNS`, same names and order;
    ``metadata`` maps to the ``metadata`` column; ``occurred_at`` is an aware
    UTC datetime with microseconds.
    """

    actor_type: str
    actor_id: int | None = None
    event_type: str
    severity: str
    request_id: str | None = None
    route_name: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    metadata: dict[str, t.Any] | None = None
    occurred_at: dt.datetime


#: Field names in column order.
FIELDS: tuple[str, ...] = tuple(c.name for c in COLUMNS)
#: Fields that differ from row to row, validated for every row.
PER_ROW_FIELDS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.per_row)
#: Fields a batch mostly repeats, validated once per distinct combination.
SHARED_FIELDS: tuple[str, ...] = tuple(c.name for c in COLUMNS if not c.per_row)


#: A row's values in column order: the fields of a :class:`TraceEvent`, as
#: :func:`values` returns them. The writer takes events in this form too, so
#: that the background writer need not make an object per event.
Values: t.TypeAlias = tuple[t.Any, ...]

#: The values of an event in column order.
values: t.Callable[[TraceEvent], Values] = operator.attrgetter(*FIELDS)


def as_row(event: TraceEvent) -> dict[str, t.Any]:
    """Return the event as a plain dict keyed by field name (no deep copy)."""
    return dict(zip(FIELDS, values(event), strict=True))


def from_values(row: Values) -> TraceEvent:
    """The :class:`TraceEvent` of values in column order."""
    return TraceEvent(**dict(zip(FIELDS, row, strict=True)))
