"""Exceptions raised by flask_telemetry."""

from __future__ import annotations


class TelemetryError(Exception):
    """Base class of every error flask_telemetry raises.

    Raised to the caller only for bad ``record()`` arguments when
    ``TELEMETRY_STRICT`` is on; storage failures never reach the caller.
    """


class TelemetryStorageException(TelemetryError):
    """Storing one or more events failed.

    Raised by the storage layer (``from`` the underlying error) and swallowed
    by the domain recorder, which counts and logs it.
    """
