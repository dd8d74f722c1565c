"""The read side: events, per-route request figures, counts, and prune.

Plain functions over SQLAlchemy Core: each takes the engine (or a
connection) of the telemetry bind and the ``telemetry_traces`` table, and
returns frozen records. :class:`~flask_telemetry.Telemetry` exposes them as
methods inside an app context; this package imports no Flask.
"""

from __future__ import annotations

from ._window import TimeBound
from .display import visible
from .events import MAX_LIMIT, event_counts, events
from .percentiles import weighted_percentiles
from .prune import prune
from .records import (
    UNMATCHED,
    EventCount,
    EventRecord,
    PruneResult,
    RouteSummary,
    Summaries,
)
from .sample import Sample
from .summary import request_summary

__all__ = [
    "MAX_LIMIT",
    "UNMATCHED",
    "EventCount",
    "EventRecord",
    "PruneResult",
    "RouteSummary",
    "Sample",
    "Summaries",
    "TimeBound",
    "event_counts",
    "events",
    "prune",
    "request_summary",
    "visible",
    "weighted_percentiles",
]
