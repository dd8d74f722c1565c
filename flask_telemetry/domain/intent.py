"""The domain DTO: what the caller means to record, before storage concerns."""

from __future__ import annotations

import dataclasses
import typing as t


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TraceIntent:
    """One event as the application describes it.

    ``event_type``, ``severity`` and ``actor_type`` may be enum members or
    their string values; the recorder checks them before mapping.
    """

    event_type: str
    severity: str
    actor_type: str
    actor_id: int | None = None
    request_id: str | None = None
    route_name: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    metadata: t.Mapping[str, t.Any] | None = None
