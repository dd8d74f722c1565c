"""Integrations that listen to one of Flask's signals for one app."""

from __future__ import annotations

import typing as t

from flask import Flask

if t.TYPE_CHECKING:
    from blinker import NamedSignal


class AppSignal:
    """A Flask signal an integration listens to, app by app.

    The app's ``extensions`` keep the listener under ``key``: blinker holds
    it weakly, and the key says whether the app is instrumented.
    """

    def __init__(self, key: str, signal: NamedSignal) -> None:
        self.key = key
        self.signal = signal

    def connect(self, app: Flask, listener: t.Callable[..., None]) -> None:
        """Listen with ``listener`` instead of any earlier one."""
        self.disconnect(app)
        app.extensions[self.key] = listener
        self.signal.connect(listener, app)

    def disconnect(self, app: Flask) -> None:
        """Stop listening; nothing when not listening."""
        listener = app.extensions.pop(self.key, None)
        if listener is not None:
            self.signal.disconnect(listener, app)

    def connected(self, app: Flask) -> bool:
        """Whether :meth:`connect` is in force on ``app``."""
        return self.key in app.extensions
