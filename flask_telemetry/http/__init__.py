"""HTTP layer: the RequestContext and the request hooks. No persistence here."""

from __future__ import annotations

from .context import RequestContext
from .hooks import ActorLoader, RequestTelemetry
from .request_id import REQUEST_ID_PATTERN, resolve_request_id

__all__ = [
    "REQUEST_ID_PATTERN",
    "ActorLoader",
    "RequestContext",
    "RequestTelemetry",
    "resolve_request_id",
]
