"""Per-request state: the RequestContext kept on ``g._telemetry``."""

from __future__ import annotations

import dataclasses
import typing as t

from ..domain.request_end import RequestEnd


@dataclasses.dataclass(kw_only=True, slots=True)
class RequestContext(RequestEnd):
    """What telemetry knows about the current request.

    Built in ``before_request``; ``status_code`` is filled in when the
    response is ready. ``route_name`` is the endpoint name, never the URL.
    ``trace_id`` and ``parent_id`` come from a valid W3C ``traceparent``
    header. ``user_agent`` is decoded once per request (WSGI's latin-1 text
    read as UTF-8).

    At the end of the request the same object is handed to the domain as
    the :class:`~flask_telemetry.domain.request_end.RequestEnd` it extends,
    so recording ``http_request_end`` copies nothing. A streamed response
    sets ``streamed``: its end is recorded when the server closes the body,
    with the actor and the exception captured at teardown.
    """

    #: ``time.perf_counter()`` when the request started.
    started: float
    streamed: bool = False
    #: What the actor loader returned at teardown of a streamed response.
    actor: tuple[t.Any, t.Any] | None = None
