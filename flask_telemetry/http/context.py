"""Per-request state: the RequestContext kept on ``g._telemetry``."""

from __future__ import annotations

import dataclasses
import typing as t


@dataclasses.dataclass(kw_only=True, slots=True)
class RequestContext:
    """What telemetry knows about the current request.

    Built in ``before_request``; ``status_code`` is filled in when the
    response is ready. ``route_name`` is the endpoint name, never the URL.
    ``trace_id`` and ``parent_id`` come from a valid W3C ``traceparent``
    header. A streamed response sets ``streamed``: its ``http_request_end``
    is recorded when the server closes the body, with the actor and the
    exception captured at teardown.
    """

    request_id: str
    route_name: str | None
    ip_address: str | None
    #: Decoded once per request (WSGI's latin-1 text read as UTF-8).
    user_agent: str | None
    method: str
    started: float
    trace_id: str | None = None
    parent_id: str | None = None
    status_code: int | None = None
    streamed: bool = False
    actor: tuple[t.Any, int | None] | None = None
    exception: str | None = None
