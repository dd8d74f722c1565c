"""flask_telemetry: best-effort request tracing for Flask, stored in one SQL table.

The public API is what this package exports, plus the documented submodules
(:mod:`flask_telemetry.testing`, :mod:`flask_telemetry.pytest_plugin`,
:mod:`flask_telemetry.integrations`). Every other module is internal.
"""

from __future__ import annotations

from ._config import ConfigVars
from ._extension import Telemetry
from .domain.correlation import Correlation
from .exceptions import TelemetryError, TelemetryStorageException
from .http.correlation import current_request_id
from .http.log_filter import RequestIdFilter
from .storage.vocabulary import ActorType, EventType, Severity

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
