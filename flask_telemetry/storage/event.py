"""The storage DTO: one row of ``telemetry_traces``, field for field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
import typing as t

#: Column sizes, shared by the model and the schema.
ACTOR_TYPE_LENGTH = 32
EVENT_TYPE_LENGTH = 64
SEVERITY_LENGTH = 16
REQUEST_ID_LENGTH = 64
ROUTE_NAME_LENGTH = 255
IP_ADDRESS_LENGTH = 45
USER_AGENT_LENGTH = 512


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TraceEvent:
    """A DB-aligned event: the values the writer inserts, already mapped.

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
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TraceEvent))
#: Fields that differ from row to row, validated for every row.
PER_ROW_FIELDS: tuple[str, ...] = ("request_id", "metadata", "occurred_at")
#: Fields a batch mostly repeats, validated once per distinct combination.
SHARED_FIELDS: tuple[str, ...] = tuple(f for f in FIELDS if f not in PER_ROW_FIELDS)


_values = operator.attrgetter(*FIELDS)


def as_row(event: TraceEvent) -> dict[str, t.Any]:
    """Return the event as a plain dict keyed by field name (no deep copy)."""
    return dict(zip(FIELDS, _values(event), strict=True))
