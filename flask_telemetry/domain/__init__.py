"""Domain layer: intent, mapping to the storage DTO, best-effort recording.

It imports no Flask. Storage failures stop here: they are counted and
logged, never raised to the caller.
"""

from __future__ import annotations

from .actor import ActorType
from .background import BackgroundDelivery
from .breaker import CircuitBreaker
from .intent import TraceIntent
from .log import RateLimitedLog, logger
from .mapping import Pending, build_event
from .recorder import Delivery, Recorder
from .request_end import RequestEnd
from .stats import DROP_REASONS, Stats
from .store import BatchStore
from .sync import SyncDelivery

__all__ = [
    "DROP_REASONS",
    "ActorType",
    "BackgroundDelivery",
    "BatchStore",
    "CircuitBreaker",
    "Delivery",
    "Pending",
    "RateLimitedLog",
    "Recorder",
    "RequestEnd",
    "Stats",
    "SyncDelivery",
    "TraceIntent",
    "build_event",
    "logger",
]
