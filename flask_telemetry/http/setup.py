"""Building the request side from the validated settings, once per app."""

from __future__ import annotations

import typing as t

from ..config import Settings
from ..domain import Recorder
from ..domain.sampling import Sampler
from .hooks import ActorLoader, RequestTelemetry
from .routes import RouteRules


def request_telemetry(
    recorder: Recorder,
    settings: Settings,
    actor_loader: t.Callable[[], ActorLoader | None],
) -> RequestTelemetry:
    """The app's RequestTelemetry, with every per-request decision precomputed."""
    return RequestTelemetry(
        recorder,
        header=settings.request_id_header,
        record_requests=settings.record_requests,
        actor_loader=actor_loader,
        rules=RouteRules(
            settings.exclude,
            slow_ms=settings.slow_request_ms,
            slow_ms_by_endpoint=settings.slow_request_ms_by_endpoint,
        ),
        sampler=Sampler(settings.sample_rate),
        keep_status=settings.sample_keep_status,
        traceparent=settings.traceparent,
    )
