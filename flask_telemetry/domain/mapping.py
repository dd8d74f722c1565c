"""Pure mapping from the domain DTO to the storage DTO."""

from __future__ import annotations

import datetime as dt
import typing as t

from ..storage import event as ev
from .intent import TraceIntent
from .privacy import Privacy, clean_text


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


def to_trace_event(
    intent: TraceIntent,
    occurred_at: dt.datetime,
    *,
    event_type: str,
    severity: str,
    actor_type: str,
    metadata: dict[str, t.Any] | None,
    privacy: Privacy,
) -> ev.TraceEvent:
    """Map an intent to the row to store.

    ``event_type``, ``severity`` and ``actor_type`` are the plain string
    values the recorder resolved, ``metadata`` the copy it cleaned. Free-text
    fields lose their control characters and are cut to their column sizes
    rather than rejected; the client address is stored as the privacy
    settings say.
    """
    return ev.TraceEvent(
        actor_type=actor_type,
        actor_id=intent.actor_id,
        event_type=event_type,
        severity=severity,
        request_id=_text(intent.request_id, ev.REQUEST_ID_LENGTH),
        route_name=_text(intent.route_name, ev.ROUTE_NAME_LENGTH),
        ip_address=_text(privacy.ip(intent.ip_address), ev.IP_ADDRESS_LENGTH),
        user_agent=_text(intent.user_agent, ev.USER_AGENT_LENGTH),
        metadata=metadata,
        occurred_at=occurred_at,
    )
