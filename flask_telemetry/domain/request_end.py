"""The end of an HTTP request as the domain records it: facts, mapped later."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(kw_only=True, slots=True)
class RequestEnd:
    """What ``http_request_end`` is made of, gathered by the request hooks.

    Every value here was produced or checked by flask_telemetry itself, so
    :meth:`~flask_telemetry.domain.Recorder.record_request_end` does not
    check it again.

    ``ended_at`` is the wall clock (seconds since the epoch) when the
    request ended; ``duration_ms`` is measured on a monotonic clock.
    """

    request_id: str
    route_name: str | None
    ip_address: str | None
    user_agent: str | None
    method: str
    trace_id: str | None = None
    parent_id: str | None = None
    status_code: int | None = None
    #: The class name of an exception that ended the request, cleaned.
    exception: str | None = None
    duration_ms: float = 0.0
    ended_at: float = 0.0
    severity: str = "info"
    slow: bool = False
    #: Set when sampling is on: 1.0 for a request always kept, else the rate.
    sample_rate: float | None = None

    @property
    def status(self) -> int:
        """The response's status; 500 for a request that ended without one."""
        return 500 if self.status_code is None else self.status_code
