"""What the ``requests`` and ``httpx`` integrations share.

The headers an outgoing call carries, and the one event a finished call may
record. Only the method, the host, the status, the duration and an error's
class are ever read from a call: never its path, query string, headers or
body.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import re
import time
import typing as t

from flask import current_app, has_app_context

from flask_telemetry import (
    ConfigVars,
    EventType,
    Severity,
    Telemetry,
    current_request_id,
)

#: The default threshold of ``external_call_slow``, in milliseconds.
DEFAULT_SLOW_MS = 1000.0
#: The header name used when no application is active to say its own.
DEFAULT_HEADER = "X-Request-ID"

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ZERO_TRACE = "0" * 32

now = time.perf_counter
logger = logging.getLogger("flask_telemetry")

#: ``(method, host)`` of an outgoing request, never raising.
Describe = t.Callable[[t.Any], tuple[str, str]]


def trace_id_for(request_id: str) -> str:
    """The W3C trace id of a request that came without a ``traceparent``.

    The same for every call of one request, so that the services it calls
    share one trace: a UUID request id (what telemetry makes) is its own hex
    form; any other id is hashed.
    """
    if _UUID.fullmatch(request_id):
        hexed = request_id.replace("-", "")
        if hexed != _ZERO_TRACE:
            return hexed
    return hashlib.blake2b(request_id.encode(), digest_size=16).hexdigest()


def _span_id() -> str:
    while True:
        span = os.urandom(8).hex()
        if span != "0000000000000000":
            return span


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OutboundOptions:
    """The options of the ``requests`` and ``httpx`` integrations."""

    #: Calls slower than this, in milliseconds, are recorded as
    #: ``external_call_slow``.
    slow_ms: float = DEFAULT_SLOW_MS
    #: Add the request id and ``traceparent`` headers; a header the caller
    #: set itself is never replaced.
    propagate: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.slow_ms, bool) or not isinstance(self.slow_ms, int | float):
            raise ValueError(f"slow_ms must be a number >= 0, not {self.slow_ms!r}.")
        if self.slow_ms < 0:
            raise ValueError(f"slow_ms must be a number >= 0, not {self.slow_ms!r}.")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Outbound:
    """One instrumented client's settings and its recording."""

    telemetry: Telemetry
    client: str
    slow_ms: float
    propagate: bool

    @classmethod
    def of(
        cls, telemetry: Telemetry, client: str, options: OutboundOptions
    ) -> Outbound:
        """The recording of ``client``'s calls with ``options``."""
        return cls(
            telemetry=telemetry,
            client=client,
            slow_ms=options.slow_ms,
            propagate=options.propagate,
        )

    def wrap(
        self, original: t.Callable[..., t.Any], describe: Describe
    ) -> t.Callable[..., t.Any]:
        """``original`` (a client's ``send(request, **kwargs)``) with the
        headers added to the request and the call recorded when it ends."""

        @functools.wraps(original)
        def send(request: t.Any, **kwargs: t.Any) -> t.Any:
            self.add_headers(request.headers)
            method, host = describe(request)
            started = now()
            try:
                response = original(request, **kwargs)
            except Exception as exc:
                self.finished(method, host, started, error=exc)
                raise
            self.finished(method, host, started, status=response.status_code)
            return response

        return send

    def wrap_async(
        self, original: t.Callable[..., t.Any], describe: Describe
    ) -> t.Callable[..., t.Any]:
        """:meth:`wrap` for an ``async def send``."""

        @functools.wraps(original)
        async def send(request: t.Any, **kwargs: t.Any) -> t.Any:
            self.add_headers(request.headers)
            method, host = describe(request)
            started = now()
            try:
                response = await original(request, **kwargs)
            except Exception as exc:
                self.finished(method, host, started, error=exc)
                raise
            self.finished(method, host, started, status=response.status_code)
            return response

        return send

    def add_headers(self, headers: t.MutableMapping[str, str]) -> None:
        """Add the request id and ``traceparent`` of the current request.

        Outside a request and without an active correlation there is nothing
        to carry, and nothing is added; a header the caller set is kept.
        Never raises.
        """
        if not self.propagate:
            return
        try:
            request_id = current_request_id()
            if request_id is None:
                return
            trace_id = self.telemetry.context().trace_id or trace_id_for(request_id)
            name = DEFAULT_HEADER
            if has_app_context():
                name = current_app.config.get(
                    ConfigVars.REQUEST_ID_HEADER, DEFAULT_HEADER
                )
            headers.setdefault(name, request_id)
            headers.setdefault("traceparent", f"00-{trace_id}-{_span_id()}-01")
        except Exception:
            logger.exception("Telemetry could not add the outgoing headers")

    def finished(
        self,
        method: str,
        host: str | None,
        started: float,
        *,
        status: int | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Record the call if it failed (transport error, 5xx) or was slow."""
        try:
            duration_ms = (now() - started) * 1000.0
            failed = error is not None or (status is not None and status >= 500)
            if not failed and duration_ms <= self.slow_ms:
                return
            metadata: dict[str, t.Any] = {
                "client": self.client,
                "method": method.upper()[:16],
                "host": (host or "")[:255],
                "status": status,
                "duration_ms": round(duration_ms, 3),
            }
            if error is not None:
                metadata["error"] = type(error).__name__
            if failed:
                self.telemetry.record(
                    EventType.EXTERNAL_CALL_FAIL, Severity.ERROR, metadata=metadata
                )
            else:
                metadata["threshold_ms"] = self.slow_ms
                self.telemetry.record(
                    EventType.EXTERNAL_CALL_SLOW, Severity.WARNING, metadata=metadata
                )
        except Exception:
            logger.exception("Telemetry could not record an outbound call")


def host_of(hostname: str | None, port: int | None, default_port: int | None) -> str:
    """``host`` or ``host:port`` when the port is not the scheme's default.

    Built from the parsed host name: credentials in a URL never reach it.
    """
    host = hostname or ""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    if port is not None and port != default_port:
        return f"{host}:{port}"
    return host


__all__ = [
    "DEFAULT_SLOW_MS",
    "Outbound",
    "OutboundOptions",
    "host_of",
    "now",
    "trace_id_for",
]
