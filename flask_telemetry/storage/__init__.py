"""Storage layer: enums, the DB-aligned DTO, its schema, the model, the writer.

It knows nothing of Flask requests or of the domain. Every failure to store
raises :class:`~flask_telemetry.exceptions.TelemetryStorageException`.
"""

from __future__ import annotations

from .enums import EventType, Severity
from .event import TraceEvent
from .model import TABLE_NAME, trace_model
from .schema import TelemetryEventSchema
from .writer import StorageFailure, TraceWriter

__all__ = [
    "TABLE_NAME",
    "EventType",
    "Severity",
    "StorageFailure",
    "TelemetryEventSchema",
    "TraceEvent",
    "TraceWriter",
    "trace_model",
]
