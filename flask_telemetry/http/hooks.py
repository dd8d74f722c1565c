"""Request hooks and request-aware recording: enrich, then delegate to the domain."""

from __future__ import annotations

import functools
import time
import types
import typing as t

from flask import Flask, Response, g, has_request_context, request

from ..domain import ActorType, Recorder, TraceIntent, logger
from ..domain.privacy import clean_text
from ..domain.sampling import Sampler
from ..storage import EventType, Severity
from .context import RequestContext
from .correlation import carried
from .request_id import REQUEST_ID_PATTERN, new_request_id
from .routes import RouteRules
from .traceparent import TRACEPARENT_ENVIRON, parse_traceparent

#: What an actor loader returns: (actor type, actor id) or None.
ActorLoader = t.Callable[[], "tuple[ActorType | str, int | None] | None"]

_valid_id = REQUEST_ID_PATTERN.fullmatch
_now = time.perf_counter
_Generator = types.GeneratorType


class RequestTelemetry:
    """Enriches events with the request and records ``http_request_end``.

    One instance per application, configured once at ``init_app``. The
    hooks never raise: a failure in them is logged and the request goes on
    untouched. Excluded requests (``rules``) get no context at all.
    ``http_request_end`` of a routine request (fast, status below
    ``keep_status``, no exception) is kept at the ``sampler``'s rate;
    when that is below 1 the row's metadata says ``sample_rate``.
    """

    def __init__(
        self,
        recorder: Recorder,
        *,
        header: str,
        record_requests: bool,
        actor_loader: t.Callable[[], ActorLoader | None],
        rules: RouteRules,
        sampler: Sampler,
        keep_status: int,
        traceparent: bool,
    ) -> None:
        self.recorder = recorder
        self.header = header
        self._environ_key = "HTTP_" + header.upper().replace("-", "_")
        self.record_requests = record_requests
        self.rules = rules
        self.sampler = sampler
        self.keep_status = keep_status
        self.traceparent = traceparent
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
        """Record an event, filling in the request's context when there is one.

        Outside a request, an active :class:`Correlation` supplies the
        request id and trace id.
        """
        try:
            ctx: RequestContext | None = (
                g.get("_telemetry") if has_request_context() else None
            )
            if actor_type is None:
                actor_type, actor_id = self._actor(ctx is not None, actor_id)
            request_id: str | None
            if ctx is not None:
                request_id, trace_id = ctx.request_id, ctx.trace_id
            else:
                corr = carried()
                request_id = corr.request_id if corr is not None else None
                trace_id = corr.trace_id if corr is not None else None
            if trace_id is not None:
                if metadata is None:
                    metadata = {"trace_id": trace_id}
                elif isinstance(metadata, t.Mapping) and "trace_id" not in metadata:
                    metadata = {"trace_id": trace_id, **metadata}
            intent = TraceIntent(
                event_type=event_type,
                severity=severity,
                actor_type=actor_type,
                actor_id=actor_id,
                metadata=metadata,
                request_id=request_id,
                route_name=ctx.route_name if ctx else None,
                ip_address=ctx.ip_address if ctx else None,
                user_agent=ctx.user_agent if ctx else None,
            )
        except Exception as exc:  # hostile arguments: count, never raise
            self.recorder.reject(exc)
            return
        self.recorder.record(intent)

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
            req = request._get_current_object()  # type: ignore[attr-defined]
            environ = req.environ
            rule = req.url_rule
            endpoint = rule.endpoint if rule is not None else None
            if self.rules.excluded(endpoint, environ.get("PATH_INFO", "")):
                return
            trace = (
                parse_traceparent(environ.get(TRACEPARENT_ENVIRON))
                if self.traceparent
                else None
            )
            incoming = environ.get(self._environ_key)
            if incoming and _valid_id(incoming):
                request_id = incoming
            elif trace is not None:
                request_id = trace[0]
            else:
                request_id = new_request_id()
            g._telemetry = RequestContext(
                request_id=request_id,
                route_name=endpoint,
                ip_address=environ.get("REMOTE_ADDR"),
                user_agent=_user_agent(environ.get("HTTP_USER_AGENT")),
                method=environ.get("REQUEST_METHOD", ""),
                started=_now(),
                trace_id=trace[0] if trace is not None else None,
                parent_id=trace[1] if trace is not None else None,
            )
        except Exception:
            logger.exception("Telemetry could not read the request")

    def _after_request(self, response: Response) -> Response:
        try:
            ctx: RequestContext | None = g.get("_telemetry")
            if ctx is not None:
                ctx.status_code = response.status_code
                response.headers[self.header] = ctx.request_id
                if self.record_requests and type(response.response) is _Generator:
                    # Response(gen()), stream_with_context(), stream_template():
                    # the body is produced after the view returns, so the
                    # request is timed until the server closes it.
                    ctx.streamed = True
                    response.call_on_close(functools.partial(self._closed, ctx))
        except Exception:
            logger.exception("Telemetry could not read the response")
        return response

    def _teardown_request(self, exc: BaseException | None) -> None:
        if not self.record_requests:
            return
        try:
            ctx: RequestContext | None = g.get("_telemetry")
            if ctx is None:
                return
            if exc is not None:
                ctx.exception = clean_text(type(exc).__name__, 200)
            if ctx.streamed:
                if ctx.actor is None:  # while the request context is here
                    ctx.actor = self._actor(True, None)
                return
            self._finish(ctx, self._actor(True, None))
        except Exception:
            logger.exception("Telemetry could not record the end of a request")

    def _closed(self, ctx: RequestContext) -> None:
        try:
            self._finish(ctx, ctx.actor or self._actor(False, None))
        except Exception:
            logger.exception("Telemetry could not record the end of a request")

    def _finish(
        self, ctx: RequestContext, actor: tuple[ActorType | str, int | None]
    ) -> None:
        duration_ms = round((_now() - ctx.started) * 1000.0, 3)
        status = ctx.status_code if ctx.status_code is not None else 500
        method = ctx.method
        if not (len(method) <= 16 and method.isascii() and method.isalpha()):
            method = clean_text(method, 16)
        metadata: dict[str, t.Any] = {
            "method": method,
            "status": status,
            "duration_ms": duration_ms,
        }
        keep = True
        if ctx.exception is not None:
            severity = Severity.ERROR
            metadata["exception"] = ctx.exception
        elif duration_ms > self.rules.slow_threshold(ctx.route_name):
            severity = Severity.WARNING
            metadata["slow"] = True
        else:
            severity = Severity.INFO
            keep = status >= self.keep_status
        sampler = self.sampler
        if sampler.rate < 1.0:
            if keep:
                metadata["sample_rate"] = 1.0
            elif sampler.keep(ctx.trace_id):
                metadata["sample_rate"] = sampler.rate
            else:
                self.recorder.skip("sampled_out")
                return
        if ctx.trace_id is not None:
            metadata["trace_id"] = ctx.trace_id
            metadata["parent_id"] = ctx.parent_id
        self.recorder.record(
            TraceIntent(
                event_type=EventType.HTTP_REQUEST_END,
                severity=severity,
                actor_type=actor[0],
                actor_id=actor[1],
                metadata=metadata,
                request_id=ctx.request_id,
                route_name=ctx.route_name,
                ip_address=ctx.ip_address,
                user_agent=ctx.user_agent,
            ),
            trusted=True,
        )


def _user_agent(value: str | None) -> str | None:
    # WSGI gives header bytes as latin-1 text; read them as the UTF-8 they
    # usually are (invalid sequences become U+FFFD).
    if value is None or value.isascii():
        return value
    return value.encode("latin-1", "replace").decode("utf-8", "replace")
