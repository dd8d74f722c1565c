"""Unhandled exceptions in requests, as ``system_exception``.

::

    from flask_telemetry.integrations import exceptions as telemetry_exceptions

    telemetry_exceptions.instrument(app, telemetry)

Listens to Flask's ``got_request_exception`` signal, sent for an exception
that no error handler took (it becomes a 500). The event carries the
exception's class and the route (the endpoint name, filled in by
``record()``); its message only with ``messages=True``, since messages
often hold user data. HTTP errors (``abort(404)``) and exceptions an
``errorhandler`` turns into a response are not unhandled and not recorded.
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

from flask import Flask, got_request_exception

from flask_telemetry import EventType, Severity, Telemetry

from ._signals import AppSignal

#: How much of a message is kept, in characters, with ``messages=True``.
MAX_MESSAGE_CHARS = 500

_SIGNAL = AppSignal("telemetry.exceptions", got_request_exception)
logger = logging.getLogger("flask_telemetry")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """The options of :func:`instrument`."""

    #: Also record ``str(exception)``, cut to :data:`MAX_MESSAGE_CHARS`
    #: characters. Off by default: a message may hold personal data or
    #: secrets that key redaction cannot see.
    messages: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.messages, bool):
            raise ValueError(f"messages must be True or False, not {self.messages!r}.")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class _Listener:
    telemetry: Telemetry
    messages: bool

    def __call__(self, sender: Flask, exception: BaseException, **extra: t.Any) -> None:
        try:
            cls = type(exception)
            name = cls.__qualname__
            if cls.__module__ not in ("builtins", "__main__"):
                name = f"{cls.__module__}.{name}"
            metadata: dict[str, t.Any] = {"exception": name[:200]}
            if self.messages:
                message = str(exception)
                if len(message) > MAX_MESSAGE_CHARS:
                    message = message[: MAX_MESSAGE_CHARS - 3] + "..."
                metadata["message"] = message
            self.telemetry.record(
                EventType.SYSTEM_EXCEPTION, Severity.ERROR, metadata=metadata
            )
        except Exception:
            logger.exception("Telemetry could not record an unhandled exception")


def instrument(app: Flask, telemetry: Telemetry, **options: t.Any) -> Flask:
    """Record the app's unhandled exceptions; return ``app``.

    Calling it again replaces the options.

    :param options: the fields of :class:`Options`: ``messages``.
    :raises ValueError: an option's value is refused.
    """
    listener = _Listener(telemetry=telemetry, messages=Options(**options).messages)
    _SIGNAL.connect(app, listener)
    return app


def uninstrument(app: Flask) -> None:
    """Stop recording the app's exceptions; nothing when not instrumented."""
    _SIGNAL.disconnect(app)


def is_instrumented(app: Flask) -> bool:
    """Whether :func:`instrument` is in force on ``app``."""
    return _SIGNAL.connected(app)


__all__ = [
    "MAX_MESSAGE_CHARS",
    "Options",
    "instrument",
    "is_instrumented",
    "uninstrument",
]
