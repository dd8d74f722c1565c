"""Outbound calls made with a ``requests.Session``.

::

    from flask_telemetry.integrations import requests as telemetry_requests

    session = telemetry_requests.instrument(requests.Session(), telemetry)

Calls made with that session carry the current request's id (under the
configured ``TELEMETRY_REQUEST_ID_HEADER``) and a W3C ``traceparent``; a call
slower than ``slow_ms`` is recorded as ``external_call_slow``, a transport
error or a 5xx answer as ``external_call_fail``, with the method, host,
status and duration only. Only this session is changed, never the
``requests`` module: ``requests.get()`` and other sessions are left alone.
"""

from __future__ import annotations

import typing as t
import urllib.parse

from flask_telemetry import Telemetry

from . import require
from ._http import Outbound, OutboundOptions, host_of

if t.TYPE_CHECKING:
    import requests

#: The options of :func:`instrument`: ``slow_ms`` (1000) and ``propagate`` (True).
Options = OutboundOptions

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MARK = "_flask_telemetry"


def instrument(
    session: requests.Session, telemetry: Telemetry, **options: t.Any
) -> requests.Session:
    """Instrument ``session`` and return it.

    Calling it again replaces the options.

    :param options: the fields of :class:`Options`: ``slow_ms``, calls
        slower than this, in milliseconds, are recorded as
        ``external_call_slow`` (time to the response's headers);
        ``propagate``, add the request id and ``traceparent`` headers (a
        header the caller set itself is never replaced).
    :raises DidNotEnable: ``requests`` is not installed.
    :raises ValueError: an option's value is refused.
    """
    require("requests", "requests")
    settings = Outbound.of(telemetry, "requests", Options(**options))
    if _MARK in vars(session):
        uninstrument(session)
    send = settings.wrap(session.send, _describe)
    setattr(session, "send", send)  # noqa: B010 (an instance attribute, undone below)
    setattr(session, _MARK, settings)
    return session


def uninstrument(session: requests.Session) -> None:
    """Undo :func:`instrument` on ``session``; nothing when it is not instrumented."""
    if vars(session).pop(_MARK, None) is not None:
        vars(session).pop("send", None)


def is_instrumented(session: requests.Session) -> bool:
    """Whether :func:`instrument` is in force on ``session``."""
    return _MARK in vars(session)


def _describe(request: requests.PreparedRequest) -> tuple[str, str]:
    try:
        parts = urllib.parse.urlsplit(request.url or "")
        return request.method or "", host_of(
            parts.hostname, parts.port, _DEFAULT_PORTS.get(parts.scheme)
        )
    except Exception:  # a malformed URL: requests itself will say so
        return request.method or "", ""


__all__ = ["Options", "instrument", "is_instrumented", "uninstrument"]
