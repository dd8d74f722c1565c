"""Mapping to the storage DTO, in two steps: checked values, then the row.

The recorder checks the caller's values and cleans the metadata on the
caller's thread, and keeps the result as a :data:`Pending` tuple. The row
(:class:`~flask_telemetry.storage.row.TraceEvent`) is built from it by
:func:`build_values` (or :func:`build_event`): on the writer thread in
async mode, so the request thread only pays for the checks.

A tuple of strings and numbers is also the cheapest thing to keep in a
queue: Python's garbage collector stops tracking it once a collection or
two have seen it (the tuple of facts inside first, then the outer one),
so a long queue costs the application's collections nothing. That is why the
metadata of ``http_request_end`` waits as a tuple of the request's facts (a
dict would keep the whole tuple tracked), and is made into its dict by the
writer.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from ..storage import row as ev
from .privacy import clean_text
from .request_end import DbFigures, RequestEnd

#: ``(actor_type, actor_id, event_type, severity, request_id, route_name,
#: ip_address, user_agent, metadata, occurred_at)``: values in column order,
#: event type, severity and actor type resolved to their strings, metadata
#: cleaned, the client address as the privacy settings store it, and
#: ``occurred_at`` in seconds since the epoch. The metadata is a dict, or
#: for ``http_request_end`` the :data:`EndFacts` its dict is made from.
#: ``(method, status, duration_ms, exception, slow, sample_rate, trace_id,
#: parent_id, release, db)`` of a finished request: see
#: :func:`request_end_metadata`.
EndFacts: t.TypeAlias = tuple[
    str,
    int,
    float,
    "str | None",
    bool,
    "float | None",
    "str | None",
    "str | None",
    "str | None",
    "DbFigures | None",
]
Pending: t.TypeAlias = tuple[
    str,
    "int | None",
    str,
    str,
    "str | None",
    "str | None",
    "str | None",
    "str | None",
    "dict[str, t.Any] | EndFacts | None",
    float,
]


def pending(
    *,
    actor_type: str,
    actor_id: int | None,
    event_type: str,
    severity: str,
    request_id: str | None,
    route_name: str | None,
    ip_address: str | None,
    user_agent: str | None,
    metadata: dict[str, t.Any] | EndFacts | None,
    occurred_at: float,
) -> Pending:
    """The :data:`Pending` tuple of an event, built by name (the one place
    that knows the slot order, which ``tests/test_row.py`` checks against
    the columns)."""
    return (
        actor_type,
        actor_id,
        event_type,
        severity,
        request_id,
        route_name,
        ip_address,
        user_agent,
        metadata,
        occurred_at,
    )


_REQUEST_ID = ev.length("request_id")
_ROUTE_NAME = ev.length("route_name")
_IP_ADDRESS = ev.length("ip_address")
_USER_AGENT = ev.length("user_agent")
_UTC = dt.UTC
_from_timestamp = dt.datetime.fromtimestamp


def _text(value: str | None, size: int) -> str | None:
    if value is None:
        return None
    if type(value) is not str:  # a str subclass, or a hostile non-str
        value = str.__str__(value) if isinstance(value, str) else None
        if value is None:
            return None
    if len(value) <= size and value.isprintable():
        return value  # the common case: nothing to do
    return clean_text(value, size) or None


def build_values(pending: Pending) -> ev.Values:
    """Build the row to store from a :data:`Pending` tuple, as its values in
    column order (what the background writer hands to the storage writer).

    Free-text fields lose their control characters and are cut to their
    column sizes rather than rejected; ``occurred_at`` becomes an aware UTC
    datetime with microseconds.
    """
    (
        actor_type,
        actor_id,
        event_type,
        severity,
        request_id,
        route_name,
        ip_address,
        user_agent,
        metadata,
        occurred_at,
    ) = pending
    return (
        actor_type,
        actor_id,
        event_type,
        severity,
        _text(request_id, _REQUEST_ID),
        _text(route_name, _ROUTE_NAME),
        _text(ip_address, _IP_ADDRESS),
        _text(user_agent, _USER_AGENT),
        request_end_metadata(metadata) if type(metadata) is tuple else metadata,
        _from_timestamp(occurred_at, _UTC),
    )


def build_event(pending: Pending) -> ev.TraceEvent:
    """Build the row to store from a :data:`Pending` tuple (see
    :func:`build_values`) as a :class:`~flask_telemetry.storage.row.TraceEvent`."""
    return ev.from_values(build_values(pending))


def request_end_facts(end: RequestEnd, release: str | None = None) -> EndFacts:
    """What the metadata of ``http_request_end`` is made of, as a tuple."""
    return (
        end.method,
        end.status,
        end.duration_ms,
        end.exception,
        end.slow,
        end.sample_rate,
        end.trace_id,
        end.parent_id,
        release,
        end.db,
    )


def request_end_metadata(facts: EndFacts) -> dict[str, t.Any]:
    """The metadata of ``http_request_end``.

    ``method``, ``status`` and ``duration_ms`` (rounded to the microsecond),
    then ``exception`` (the class name) or ``slow``, then ``sample_rate``
    when sampling is on, then ``trace_id`` and ``parent_id`` when the request
    carried a ``traceparent``, then ``release`` when one is configured, then
    ``db_count`` and ``db_ms`` (the request's statements and their time) when
    the SQLAlchemy integration counted them.
    """
    (
        method,
        status,
        duration_ms,
        exception,
        slow,
        sample_rate,
        trace_id,
        parent,
        release,
        db,
    ) = facts
    if not (len(method) <= 16 and method.isascii() and method.isalpha()):
        method = clean_text(method, 16)
    metadata: dict[str, t.Any] = {
        "method": method,
        "status": status,
        "duration_ms": round(duration_ms, 3),
    }
    if exception is not None:
        metadata["exception"] = exception
    elif slow:
        metadata["slow"] = True
    if sample_rate is not None:
        metadata["sample_rate"] = sample_rate
    if trace_id is not None:
        metadata["trace_id"] = trace_id
        metadata["parent_id"] = parent
    if release is not None:
        metadata["release"] = release
    if db is not None:
        metadata["db_count"] = db[0]
        metadata["db_ms"] = round(db[1], 3)
    return metadata
