"""Carrying the request id into threads, background jobs and log records."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import typing as t

from flask import g, has_request_context

from .request_id import new_request_id


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Correlation:
    """The ids that tie an event to a request: plain strings, safe to pickle.

    Take it in the request with ``telemetry.context()``, hand it to a thread
    or put its fields in a job's payload, and activate it where the work
    runs::

        corr = telemetry.context()
        executor.submit(send_receipt, order_id, corr)

        def send_receipt(order_id, corr):
            with corr.activate():
                telemetry.record(EventType.WORKER_JOB_START)  # request_id = corr's

    While active (in that thread or asyncio task only), events recorded
    outside a request carry ``request_id`` and ``trace_id``, and
    :class:`~flask_telemetry.RequestIdFilter` puts them on log records.
    """

    #: The request id the events will carry.
    request_id: str
    #: The W3C trace id of the request, when it came with a ``traceparent``.
    trace_id: str | None = None

    @classmethod
    def new(cls) -> Correlation:
        """A fresh correlation, for work that starts outside any request."""
        return cls(request_id=new_request_id())

    @contextlib.contextmanager
    def activate(self) -> t.Iterator[Correlation]:
        """Make this the current correlation for the ``with`` block."""
        token = _carried.set(self)
        try:
            yield self
        finally:
            _carried.reset(token)


_carried: contextvars.ContextVar[Correlation | None] = contextvars.ContextVar(
    "flask_telemetry_correlation", default=None
)


def carried() -> Correlation | None:
    """The correlation activated in this thread or task, if any."""
    return _carried.get()


def current_ids() -> tuple[str | None, str | None]:
    """``(request_id, trace_id)`` of the current request or active correlation."""
    if has_request_context():
        ctx = g.get("_telemetry")
        if ctx is not None:
            return ctx.request_id, ctx.trace_id
    corr = _carried.get()
    if corr is not None:
        return corr.request_id, corr.trace_id
    return None, None


def current_request_id() -> str | None:
    """The request id of the current request or active correlation, else None."""
    return current_ids()[0]


def current_correlation() -> Correlation | None:
    """A :class:`Correlation` of the current request or active correlation."""
    request_id, trace_id = current_ids()
    if request_id is None:
        return None
    return Correlation(request_id=request_id, trace_id=trace_id)
