"""Per-request state: the RequestContext kept on ``g._telemetry``."""

from __future__ import annotations

import dataclasses
import typing as t

from ..domain.request_end import RequestEnd


@dataclasses.dataclass(kw_only=True, slots=True, init=False)
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

    It is made once per request, so its ``__init__`` is written out with
    positional arguments: the generated keyword-only one of a dataclass
    costs twice as much (it fills each default from a dict of defaults).
    """

    #: ``time.perf_counter()`` when the request started.
    started: float
    streamed: bool = False
    #: What the actor loader returned at teardown of a streamed response.
    actor: tuple[t.Any, t.Any] | None = None
    #: Set at teardown: a harness that holds an app context around its
    #: client has Flask reuse one ``g`` for every request, so a later
    #: request whose ``before_request`` did not run can find this object.
    finished: bool = False

    def __init__(
        self,
        request_id: str,
        route_name: str | None,
        ip_address: str | None,
        user_agent: str | None,
        method: str,
        started: float,
        trace_id: str | None = None,
        parent_id: str | None = None,
    ) -> None:
        self.request_id = request_id
        self.route_name = route_name
        self.ip_address = ip_address
        self.user_agent = user_agent
        self.method = method
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.status_code = None
        self.exception = None
        self.duration_ms = 0.0
        self.ended_at = 0.0
        self.severity = "info"
        self.slow = False
        self.sample_rate = None
        self.db = None
        self.started = started
        self.streamed = False
        self.actor = None
        self.finished = False
