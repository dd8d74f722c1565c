"""Request hooks and request-aware recording: enrich, then delegate to the domain."""

from __future__ import annotations

import time
import typing as t

from flask import Flask, Response, g, has_request_context, request

from ..domain import ActorType, Recorder, TraceIntent, logger
from ..storage import EventType, Severity
from .context import RequestContext
from .request_id import resolve_request_id

#: What an actor loader returns: (actor type, actor id) or None.
ActorLoader = t.Callable[[], "tuple[ActorType | str, int | None] | None"]


class RequestTelemetry:
    """Enriches events with the request and records ``http_request_end``.

    One instance per application. The hooks never raise: a failure in them
    is logged and the request goes on untouched.
    """

    def __init__(
        self,
        recorder: Recorder,
        *,
        header: str,
        record_requests: bool,
        slow_request_ms: float,
        actor_loader: t.Callable[[], ActorLoader | None],
    ) -> None:
        self.recorder = recorder
        self.header = header
        self.record_requests = record_requests
        self.slow_request_ms = slow_request_ms
        self._actor_loader = actor_loader

    def register(self, app: Flask) -> None:
        """Install the hooks on ``app``."""
        app.before_request(self._before_request)
        app.after_request(self._after_request)
        app.teardown_request(self._teardown_request)

    # -- recording ----------------------------------------------------------

    def record(
        self,
        event_type: EventType | str,
        severity: Severity | str = Severity.INFO,
        *,
        metadata: t.Mapping[str, t.Any] | None = None,
        actor_type: ActorType | str | None = None,
        actor_id: int | None = None,
    ) -> None:
        """Record an event, filling in the request's context when there is one."""
        ctx = g.get("_telemetry") if has_request_context() else None
        if actor_type is None:
            actor_type, actor_id = self._actor(ctx is not None, actor_id)
        self.recorder.record(
            TraceIntent(
                event_type=event_type,
                severity=severity,
                actor_type=actor_type,
                actor_id=actor_id,
                metadata=metadata,
                request_id=ctx.request_id if ctx else None,
                route_name=ctx.route_name if ctx else None,
                ip_address=ctx.ip_address if ctx else None,
                user_agent=ctx.user_agent if ctx else None,
            )
        )

    def _actor(
        self, in_request: bool, actor_id: int | None
    ) -> tuple[ActorType | str, int | None]:
        loader = self._actor_loader()
        if loader is not None and in_request:
            try:
                actor = loader()
            except Exception:
                logger.exception("The telemetry actor_loader failed")
                actor = None
            if actor is not None:
                return actor
        return (ActorType.ANONYMOUS if in_request else ActorType.SYSTEM), actor_id

    # -- hooks ----------------------------------------------------------------

    def _before_request(self) -> None:
        try:
            headers = request.headers
            g._telemetry = RequestContext(
                request_id=resolve_request_id(headers.get(self.header)),
                route_name=request.endpoint,
                ip_address=request.remote_addr,
                user_agent=headers.get("User-Agent"),
                method=request.method,
                started=time.perf_counter(),
            )
        except Exception:
            logger.exception("Telemetry could not read the request")

    def _after_request(self, response: Response) -> Response:
        ctx: RequestContext | None = g.get("_telemetry")
        if ctx is not None:
            ctx.status_code = response.status_code
            response.headers[self.header] = ctx.request_id
        return response

    def _teardown_request(self, exc: BaseException | None) -> None:
        if not self.record_requests:
            return
        try:
            ctx: RequestContext | None = g.get("_telemetry")
            if ctx is None:
                return
            duration_ms = round((time.perf_counter() - ctx.started) * 1000.0, 3)
            metadata: dict[str, t.Any] = {
                "method": ctx.method,
                "status": ctx.status_code if ctx.status_code is not None else 500,
                "duration_ms": duration_ms,
            }
            if exc is not None:
                severity = Severity.ERROR
                metadata["exception"] = type(exc).__name__
            elif duration_ms > self.slow_request_ms:
                severity = Severity.WARNING
                metadata["slow"] = True
            else:
                severity = Severity.INFO
            self.record(EventType.HTTP_REQUEST_END, severity, metadata=metadata)
        except Exception:
            logger.exception("Telemetry could not record the end of a request")
