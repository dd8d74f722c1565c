"""The ids of the current request, or of the correlation carried here."""

from __future__ import annotations

from flask import g, has_request_context

from ..domain.correlation import Correlation, carried


def current_ids() -> tuple[str | None, str | None]:
    """``(request_id, trace_id)`` of the current request or active correlation."""
    if has_request_context():
        ctx = g.get("_telemetry")
        if ctx is not None:
            return ctx.request_id, ctx.trace_id
    corr = carried()
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
