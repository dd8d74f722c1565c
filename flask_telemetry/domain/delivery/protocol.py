"""What a delivery is, and the one guard that resets it in a forked child."""

from __future__ import annotations

import os
import typing as t
import weakref

from ..mapping import Pending


class Delivery(t.Protocol):
    """Where the recorder hands events: sync or background delivery."""

    def deliver(self, pending: Pending, /) -> object:
        """Store or queue the event built from ``pending`` (see
        :func:`~flask_telemetry.domain.mapping.build_event`); the background
        writer builds it on its own thread. Never raise for a storage failure.
        What it returns is ignored."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until what was delivered is stored or counted as dropped."""

    def depth(self) -> int:
        """Events delivered and not yet stored or dropped."""

    def close(self, timeout: float | None = None) -> None:
        """Flush with a deadline and stop; count what is left as dropped."""

    def after_fork(self) -> None:
        """Start afresh in a child process: the parent keeps its events."""


def weak_method(obj: object, name: str) -> t.Callable[..., None]:
    """A callback to ``obj.name`` that does nothing once ``obj`` is gone.

    For atexit and fork hooks, which would otherwise keep every application
    ever made alive until the interpreter exits.
    """
    ref = weakref.ref(obj)

    def call(*args: t.Any) -> None:
        target = ref()
        if target is not None:
            getattr(target, name)(*args)

    return call


class ForkGuard:
    """Calls ``owner.after_fork()`` once in each child process.

    Python's fork hook (``os.register_at_fork``) runs it right after a fork;
    :meth:`check`, called where a delivery is entered, runs it for servers
    that fork without running Python's fork hooks. Holds its owner weakly.
    """

    __slots__ = ("__weakref__", "_call", "pid")

    def __init__(self, owner: object) -> None:
        self.pid = os.getpid()
        self._call = weak_method(owner, "after_fork")
        os.register_at_fork(after_in_child=weak_method(self, "check"))

    def check(self) -> None:
        """Run ``after_fork`` if this is a new process since the last check."""
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self._call()
