"""Outbound calls made with an ``httpx.Client`` or ``httpx.AsyncClient``.

::

    from flask_telemetry.integrations import httpx as telemetry_httpx

    client = telemetry_httpx.instrument(httpx.Client(), telemetry)
    aclient = telemetry_httpx.instrument(httpx.AsyncClient(), telemetry)

Calls made with that client carry the current request's id (under the
configured ``TELEMETRY_REQUEST_ID_HEADER``) and a W3C ``traceparent``; a call
slower than ``slow_ms`` is recorded as ``external_call_slow``, a transport
error or a 5xx answer as ``external_call_fail``, with the method, host,
status and duration only. A call is one ``send()``: redirects it follows
are part of it. Only this client is changed, never the ``httpx`` module.
"""

from __future__ import annotations

import typing as t

from flask_telemetry import Telemetry

from . import require
from ._http import Outbound, OutboundOptions, host_of

if t.TYPE_CHECKING:
    import httpx

C = t.TypeVar("C", "httpx.Client", "httpx.AsyncClient")

#: The options of :func:`instrument`: ``slow_ms`` (1000) and ``propagate`` (True).
Options = OutboundOptions

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MARK = "_flask_telemetry"


def instrument(client: C, telemetry: Telemetry, **options: t.Any) -> C:
    """Instrument ``client`` (sync or async) and return it.

    Calling it again replaces the options.

    :param options: the fields of :class:`Options`: ``slow_ms``, calls
        slower than this, in milliseconds, are recorded as
        ``external_call_slow`` (time to the response's headers when
        streamed, to its whole body otherwise); ``propagate``, add the
        request id and ``traceparent`` headers (a header the caller set
        itself is never replaced).
    :raises DidNotEnable: ``httpx`` is not installed.
    :raises ValueError: an option's value is refused.
    """
    library = require("httpx", "httpx")
    settings = Outbound.of(telemetry, "httpx", Options(**options))
    if _MARK in vars(client):
        uninstrument(client)
    if isinstance(client, library.AsyncClient):
        send = settings.wrap_async(client.send, _describe)
    else:
        send = settings.wrap(client.send, _describe)
    setattr(client, "send", send)  # noqa: B010 (an instance attribute, undone below)
    setattr(client, _MARK, settings)
    return client


def uninstrument(client: httpx.Client | httpx.AsyncClient) -> None:
    """Undo :func:`instrument` on ``client``; nothing when it is not instrumented."""
    if vars(client).pop(_MARK, None) is not None:
        vars(client).pop("send", None)


def is_instrumented(client: httpx.Client | httpx.AsyncClient) -> bool:
    """Whether :func:`instrument` is in force on ``client``."""
    return _MARK in vars(client)


def _describe(request: httpx.Request) -> tuple[str, str]:
    try:
        url = request.url
        return request.method, host_of(
            url.host, url.port, _DEFAULT_PORTS.get(url.scheme)
        )
    except Exception:
        return request.method, ""


__all__ = ["Options", "instrument", "is_instrumented", "uninstrument"]
