"""Per-request state: the RequestContext kept on ``g._telemetry``."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(kw_only=True, slots=True)
class RequestContext:
    """What telemetry knows about the current request.

    Built in ``before_request``; ``status_code`` is filled in when the
    response is ready. ``route_name`` is the endpoint name, never the URL.
    """

    request_id: str
    route_name: str | None
    ip_address: str | None
    user_agent: str | None
    method: str
    started: float
    status_code: int | None = None
