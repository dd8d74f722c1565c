"""Pure mapping from the domain DTO to the storage DTO."""

from __future__ import annotations

import datetime as dt

from ..storage import event as ev
from .intent import TraceIntent


def _cut(value: str | None, size: int) -> str | None:
    return value if value is None or len(value) <= size else value[:size]


def to_trace_event(
    intent: TraceIntent,
    occurred_at: dt.datetime,
    *,
    event_type: str,
    severity: str,
    actor_type: str,
) -> ev.TraceEvent:
    """Map an intent to the row to store.

    ``event_type``, ``severity`` and ``actor_type`` are the plain string
    values the recorder resolved. Free-text fields are cut to their column
    sizes rather than rejected; metadata is copied (one level) so that a
    caller changing its dict afterwards does not change the stored event.
    """
    return ev.TraceEvent(
        actor_type=actor_type,
        actor_id=intent.actor_id,
        event_type=event_type,
        severity=severity,
        request_id=_cut(intent.request_id, ev.REQUEST_ID_LENGTH),
        route_name=_cut(intent.route_name, ev.ROUTE_NAME_LENGTH),
        ip_address=_cut(intent.ip_address, ev.IP_ADDRESS_LENGTH),
        user_agent=_cut(intent.user_agent, ev.USER_AGENT_LENGTH),
        metadata=None if intent.metadata is None else dict(intent.metadata),
        occurred_at=occurred_at,
    )
