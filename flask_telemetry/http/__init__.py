"""HTTP layer: the RequestContext and the request hooks. No persistence here."""

from __future__ import annotations

from .context import RequestContext
from .correlation import (
    Correlation,
    current_correlation,
    current_request_id,
)
from .hooks import ActorLoader, RequestTelemetry
from .log_filter import RequestIdFilter
from .request_id import REQUEST_ID_PATTERN, new_request_id, resolve_request_id
from .routes import RouteRules
from .setup import request_telemetry
from .timing import Timed
from .traceparent import parse_traceparent

__all__ = [
    "REQUEST_ID_PATTERN",
    "ActorLoader",
    "Correlation",
    "RequestContext",
    "RequestIdFilter",
    "RequestTelemetry",
    "RouteRules",
    "Timed",
    "current_correlation",
    "current_request_id",
    "new_request_id",
    "parse_traceparent",
    "request_telemetry",
    "resolve_request_id",
]
