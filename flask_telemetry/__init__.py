"""flask_telemetry: best-effort request tracing for Flask, stored in one SQL table."""

from __future__ import annotations

from .config import ConfigVars
from .domain import ActorType
from .exceptions import TelemetryError, TelemetryStorageException
from .extension import Telemetry
from .http import Correlation, RequestIdFilter, current_request_id
from .storage import EventType, Severity

__version__ = "0.1.0"

__all__ = [
    "ActorType",
    "ConfigVars",
    "Correlation",
    "EventType",
    "RequestIdFilter",
    "Severity",
    "Telemetry",
    "TelemetryError",
    "TelemetryStorageException",
    "current_request_id",
]
