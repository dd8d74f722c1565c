"""One row of ``telemetry_traces``, declared once.

:class:`TraceEvent` is the declaration: one field per column, in column
order, with its Python type (``X | None`` for a nullable column) and what
the :class:`Spec` annotated on it says (length, vocabulary, indexes). :data:`COLUMNS` is
read from it; the model, the schema, the queued form and its builders
(``domain/mapping.py``), the queue's size accounting, the insert's
converters and the read side's query are made from :data:`COLUMNS`, as
``dataclasses`` makes a class's ``__init__``. Adding a column is: a field
here, a migration, and tests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import operator
import typing as t

from .vocabulary import ActorType, EventType, Severity


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
    #: The enum of the values a text column holds: a word the recorder
    #: resolves (never cleaned nor cut). The schema accepts its values only,
    #: or also those an application registers when ``extensible``.
    vocabulary: type[enum.Enum] | None = None
    extensible: bool = False

    @property
    def free_text(self) -> bool:
        """Text from outside (not a vocabulary word): cleaned of control
        characters and cut to :attr:`length` before it is stored."""
        return self.kind is str and self.vocabulary is None


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    """What a field of :class:`TraceEvent` says of its column, besides its
    name and type (see :class:`Column`)."""

    length: int | None = None
    per_row: bool = False
    indexed: bool = False
    vocabulary: type[enum.Enum] | None = None
    extensible: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TraceEvent:
    """A DB-aligned event: the values the writer inserts, already mapped.

    One field per column of ``telemetry_traces`` after ``id``, in column
    order: the declaration of the row. ``X | None`` is a nullable column,
    and its field defaults to None; the ``Spec`` beside the type says the
    rest. ``metadata`` maps to the ``metadata`` column; ``occurred_at``
    is an aware UTC datetime with microseconds.

    .. The types are written out for the documentation, which would
       otherwise show each annotation whole, Spec(...) included: keep one
       ``:param:`` and one ``:type:`` per field.

    :param actor_type: an :class:`~flask_telemetry.ActorType` value.
    :param actor_id: the user's (or service's) id.
    :param event_type: an :class:`~flask_telemetry.EventType` value, or one
        the application registered.
    :param severity: a :class:`~flask_telemetry.Severity` value.
    :param request_id: the correlation id of the request.
    :param route_name: the Flask endpoint name, never the URL.
    :param ip_address: the client address, as ``TELEMETRY_IP_MODE`` keeps it.
    :param user_agent: the client's user agent, cut to the column's length.
    :param metadata: the event's metadata, a JSON object.
    :param occurred_at: when it happened.
    :type actor_type: str
    :type actor_id: int | None
    :type event_type: str
    :type severity: str
    :type request_id: str | None
    :type route_name: str | None
    :type ip_address: str | None
    :type user_agent: str | None
    :type metadata: dict[str, Any] | None
    :type occurred_at: datetime.datetime
    """

    actor_type: t.Annotated[str, Spec(length=32, vocabulary=ActorType)]
    actor_id: int | None = None
    event_type: t.Annotated[
        str, Spec(length=64, indexed=True, vocabulary=EventType, extensible=True)
    ]
    severity: t.Annotated[str, Spec(length=16, vocabulary=Severity)]
    request_id: t.Annotated[str | None, Spec(length=64, per_row=True, indexed=True)] = (
        None
    )
    route_name: t.Annotated[str | None, Spec(length=255)] = None
    ip_address: t.Annotated[str | None, Spec(length=45)] = None
    user_agent: t.Annotated[str | None, Spec(length=512)] = None
    metadata: t.Annotated[dict[str, t.Any] | None, Spec(per_row=True)] = None
    occurred_at: t.Annotated[dt.datetime, Spec(per_row=True, indexed=True)]


def _columns() -> tuple[Column, ...]:
    hints = t.get_type_hints(TraceEvent, include_extras=True)
    found = []
    for field in dataclasses.fields(TraceEvent):
        hint, spec = hints[field.name], Spec()
        if t.get_origin(hint) is t.Annotated:
            hint, spec = t.get_args(hint)[:2]
        kinds = [k for k in t.get_args(hint) if k is not type(None)] or [hint]
        nullable = type(None) in t.get_args(hint)
        assert nullable == (field.default is None), field.name
        found.append(
            Column(
                field.name,
                t.get_origin(kinds[0]) or kinds[0],
                nullable=nullable,
                **{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)},
            )
        )
    return tuple(found)


#: The columns after ``id``, in column order, read from :class:`TraceEvent`.
COLUMNS: tuple[Column, ...] = _columns()

#: Column by name.
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}


def length(name: str) -> int:
    """The length of the text column ``name``."""
    size = BY_NAME[name].length
    assert size is not None, name
    return size


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


def define(name: str, source: str, scope: dict[str, t.Any]) -> t.Any:
    """The function ``name`` that ``source`` defines, run with the globals
    ``scope``: how the builders made from :data:`COLUMNS` are written out
    once, at import, as straight-line code (as ``dataclasses`` writes a
    class's ``__init__``), where they run once or more per event."""
    exec(compile(source, f"<flask_telemetry {name}>", "exec"), scope)
    return scope[name]


def as_row(event: TraceEvent) -> dict[str, t.Any]:
    """Return the event as a plain dict keyed by field name (no deep copy)."""
    return dict(zip(FIELDS, values(event), strict=True))


class JsonText(str):
    """A metadata object as the JSON text stored, made by the privacy
    settings' encoded copy (``domain/encoded.py``) from metadata it checked
    whole. The queue holds it as it is (smaller than the objects, and its
    size is its length), the schema takes it without encoding it again, and
    a :class:`TraceEvent` made of queued values holds its objects."""

    __slots__ = ()

    def objects(self) -> dict[str, t.Any]:
        """The metadata object the text holds."""
        value: dict[str, t.Any] = json.loads(self)
        return value


def from_values(row: Values) -> TraceEvent:
    """The :class:`TraceEvent` of values in column order (metadata queued
    as its :class:`JsonText` made objects again)."""
    fields = dict(zip(FIELDS, row, strict=True))
    metadata = fields["metadata"]
    if type(metadata) is JsonText:
        fields["metadata"] = metadata.objects()
    return TraceEvent(**fields)
