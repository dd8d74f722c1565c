"""Carrying the request id into threads and background jobs.

:class:`Correlation` holds the ids; :func:`carried` is the one activated in
this thread or task. What the current request's ids are is the HTTP layer's
to say (``flask_telemetry.http.correlation``).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import operator
import random
import re
import typing as t

#: What a request id may look like: 1-64 safe characters. An incoming
#: header, and a :class:`Correlation` made by hand or from a job's payload,
#: that does not match is replaced, never cleaned up.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


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

    def __post_init__(self) -> None:
        # Validated like the request-id header: a value that could shape
        # what is stored or logged (newlines, quotes, 8 KiB) is replaced.
        request_id = self.request_id
        if not (
            isinstance(request_id, str) and REQUEST_ID_PATTERN.fullmatch(request_id)
        ):
            object.__setattr__(self, "request_id", new_request_id())
        trace_id = self.trace_id
        if trace_id is not None and not (
            isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id)
        ):
            object.__setattr__(self, "trace_id", None)

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


_getrandbits = random.getrandbits
# The version (4) and variant (10) bits of a UUID4: the bits to clear, then
# the bits to set, in the 128-bit integer.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (0x4000 << 64) | (0x8000 << 48)
# The 8-4-4-4-12 groups of the 32 hex digits, cut in one C call with
# prebuilt slices (cheaper than five slice expressions and an f-string).
_groups = operator.itemgetter(
    slice(0, 8), slice(8, 12), slice(12, 16), slice(16, 20), slice(20, 32)
)
_dashed = "-".join


def new_request_id() -> str:
    """A random UUID4 in its canonical form.

    Unique, not secret: the bits come from :func:`random.getrandbits` (the
    Mersenne Twister, reseeded in each forked child), not from the operating
    system, which costs a system call per id; OpenTelemetry makes its trace
    ids the same way. A request id correlates events; it grants nothing.
    """
    return _dashed(_groups("%032x" % (_getrandbits(128) & _CLEAR | _SET)))


_carried: contextvars.ContextVar[Correlation | None] = contextvars.ContextVar(
    "flask_telemetry_correlation", default=None
)


def carried() -> Correlation | None:
    """The correlation activated in this thread or task, if any."""
    return _carried.get()
