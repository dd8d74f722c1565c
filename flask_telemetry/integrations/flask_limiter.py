"""Requests Flask-Limiter rejects, as ``rate_limit_hit``.

::

    from flask_telemetry.integrations import flask_limiter as telemetry_limiter

    telemetry_limiter.instrument(app, telemetry)

When a limit rejects a request, the event carries the limit (for example
``2 per 1 minute``), the method and the route (the endpoint name, filled in
by ``record()``); never the limiter's key, which is usually the client's
address. Every ``Limiter`` on the app is watched, whenever it was set up,
and the application's own ``on_breach`` callbacks and 429 handlers are left
as they are.
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

from flask import Flask, Response, request, request_finished

from flask_telemetry import EventType, Severity, Telemetry

from . import require
from ._signals import AppSignal

_SIGNAL = AppSignal("telemetry.flask_limiter", request_finished)
logger = logging.getLogger("flask_telemetry")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class _Listener:
    telemetry: Telemetry

    def __call__(self, sender: Flask, response: Response, **extra: t.Any) -> None:
        # Sent once the response is ready, before the limiters forget this
        # request's limits at teardown. A breached limit always rejects.
        try:
            for limiter in sender.extensions.get("limiter", ()):
                for limit in limiter.current_limits:
                    if limit.breached:
                        self._record(limit)
        except Exception:
            logger.exception("Telemetry could not record a rate limit hit")

    def _record(self, limit: t.Any) -> None:
        self.telemetry.record(
            EventType.RATE_LIMIT_HIT,
            Severity.WARNING,
            metadata={
                "limit": str(limit.limit)[:200],
                "method": request.method[:16],
                "shared": bool(limit.shared),
            },
        )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """The options of :func:`instrument`: none so far."""


def instrument(app: Flask, telemetry: Telemetry, **options: t.Any) -> Flask:
    """Record the requests the app's limiters reject; return ``app``.

    Calling it again replaces the first call; nothing is installed twice.

    :param options: the fields of :class:`Options` (none so far).
    :raises DidNotEnable: Flask-Limiter is not installed.
    """
    require("flask_limiter", "limiter")
    Options(**options)
    listener = _Listener(telemetry=telemetry)
    _SIGNAL.connect(app, listener)
    return app


def uninstrument(app: Flask) -> None:
    """Stop recording the app's rate limit hits; nothing when not instrumented."""
    _SIGNAL.disconnect(app)


def is_instrumented(app: Flask) -> bool:
    """Whether :func:`instrument` is in force on ``app``."""
    return _SIGNAL.connected(app)


__all__ = ["Options", "instrument", "is_instrumented", "uninstrument"]
