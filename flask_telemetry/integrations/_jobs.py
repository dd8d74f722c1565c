"""What the Celery and RQ integrations share: carrying ids, timing, recording.

A job is enqueued with the ids of the request (or active correlation) that
enqueued it, as two plain strings; the worker checks them, activates them
as a :class:`~flask_telemetry.Correlation` while the job runs, and records
``worker_job_start`` (optional), ``worker_job_end`` or ``worker_job_fail``
through :meth:`Telemetry.record <flask_telemetry.Telemetry.record>`.

Nothing here raises into the job or the enqueue: every failure is logged on
the ``flask_telemetry`` logger, at most a few lines a minute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
import time
import typing as t

from flask import Flask, has_app_context

from flask_telemetry import (
    Correlation,
    EventType,
    Severity,
    Telemetry,
    current_request_id,
)
from flask_telemetry.integrations._db_time import Tally, current_tally

from . import sqlalchemy as _db

logger = logging.getLogger("flask_telemetry")

#: The key under which the ids travel: a Celery message header prefix and
#: the ``job.meta`` key of RQ.
REQUEST_ID_KEY = "telemetry_request_id"
TRACE_ID_KEY = "telemetry_trace_id"
#: RQ only: how many times the job was retried after an exception.
RETRIES_KEY = "telemetry_retries"

# The same rules as an incoming X-Request-ID and a W3C trace id: a value
# from the broker that does not match is ignored, never cleaned up.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_TRACE_ID = re.compile(r"(?!0{32})[0-9a-f]{32}")
_EXCEPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
_MESSAGE_LENGTH = 500

_now = time.perf_counter


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class JobOptions:
    """The options of the Celery and RQ integrations' ``instrument()``."""

    #: The Flask app to record in when a hook runs outside an app context.
    app: Flask | None = None
    #: Also record ``worker_job_start`` when a job starts.
    record_start: bool = False
    #: A run longer than this, in milliseconds, is recorded as slow
    #: (severity ``warning``) and always kept under sampling.
    slow_ms: float = 10_000.0
    #: Put the exception's message (cut to 500 characters) in
    #: ``worker_job_fail``; off by default, since messages may hold
    #: personal data.
    include_message: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.slow_ms, bool) or not isinstance(self.slow_ms, int | float):
            raise TypeError(f"slow_ms must be a number, not {self.slow_ms!r}.")
        if not self.slow_ms >= 0:
            raise ValueError(f"slow_ms must be 0 or more, not {self.slow_ms!r}.")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Jobs:
    """One ``instrument()`` in force: the telemetry it records with, and how."""

    telemetry: Telemetry
    options: JobOptions

    def __post_init__(self) -> None:
        if not isinstance(self.telemetry, Telemetry):
            raise TypeError(
                "telemetry must be a flask_telemetry.Telemetry, "
                f"not {self.telemetry!r}."
            )


def outgoing_ids(telemetry: Telemetry) -> dict[str, str]:
    """The ids a job enqueued here should carry; empty outside any request
    and active correlation."""
    if current_request_id() is None:
        return {}
    corr = telemetry.context()
    ids = {REQUEST_ID_KEY: corr.request_id}
    if corr.trace_id is not None:
        ids[TRACE_ID_KEY] = corr.trace_id
    return ids


def incoming_correlation(
    telemetry: Telemetry, request_id: object, trace_id: object
) -> Correlation:
    """The correlation a job runs under: the enqueuer's ids when they are
    well formed, else the current one (an eager job in a request), else new."""
    if isinstance(request_id, str) and _REQUEST_ID.fullmatch(request_id):
        if not (isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id)):
            trace_id = None
        return Correlation(request_id=request_id, trace_id=trace_id)
    return telemetry.context()


@dataclasses.dataclass(kw_only=True, slots=True)
class JobRun:
    """One execution of a job in a worker, from its start to its outcome.

    Created when the job starts: it activates the correlation (so that
    ``record()`` calls and log records in the job carry the ids) and
    decides, once, whether a routine run is kept under sampling. Slow and
    failing runs are always kept.
    """

    jobs: Jobs
    system: str
    job: str | None
    job_id: str | None
    queue: str | None
    retries: int | None
    correlation: Correlation
    started: float = dataclasses.field(default_factory=_now)
    sample_rate: float = 1.0
    keep: bool = True
    exception: BaseException | type[BaseException] | None = None
    #: The job's statements, when the SQLAlchemy integration is enabled.
    db_tally: Tally | None = None
    #: The tally the job's replaced (an eager job in a request), put back
    #: when it ends.
    db_outer: Tally | None = None
    _stack: contextlib.ExitStack = dataclasses.field(
        default_factory=contextlib.ExitStack
    )

    def start(self) -> None:
        """Activate the correlation, decide sampling, record the start."""
        self._stack.enter_context(self.correlation.activate())
        with self._recording():
            telemetry = self.jobs.telemetry
            self.sample_rate = _sample_rate(telemetry)
            if self.sample_rate < 1.0:
                self.keep = telemetry._required().keep_routine(
                    self.correlation.trace_id
                )
            if self.jobs.options.record_start and self.keep:
                self._record(EventType.WORKER_JOB_START, Severity.INFO, {})
            self.db_outer = current_tally.get()
            self.db_tally = _db.job_tally()

    def finish(self, *, failed: bool, will_retry: bool = False) -> None:
        """Record the outcome, then deactivate the correlation."""
        try:
            duration_ms = (_now() - self.started) * 1000.0
            self.finish_with(
                duration_ms=duration_ms, failed=failed, will_retry=will_retry
            )
        finally:
            self.close()

    def finish_with(
        self, *, duration_ms: float, failed: bool, will_retry: bool = False
    ) -> None:
        """Record the outcome with a duration measured by the job library."""
        facts: dict[str, t.Any] = {"duration_ms": round(duration_ms, 3)}
        with self._recording():
            tally = self.db_tally
            if tally is not None:
                if current_tally.get() is tally:  # what follows is not the job's
                    current_tally.set(self.db_outer)
                facts.update(_db.job_figures(tally, self.job))
            if failed:
                facts.update(self._failure())
                facts["will_retry"] = will_retry
                severity = Severity.WARNING if will_retry else Severity.ERROR
                self._record(EventType.WORKER_JOB_FAIL, severity, facts, always=True)
            elif duration_ms > self.jobs.options.slow_ms:
                facts["slow"] = True
                severity = Severity.WARNING
                self._record(EventType.WORKER_JOB_END, severity, facts, always=True)
            elif self.keep:
                self._record(EventType.WORKER_JOB_END, Severity.INFO, facts)
            else:
                self.jobs.telemetry._required().count_sampled_out()

    def close(self) -> None:
        """Deactivate the correlation (idempotent)."""
        tally, self.db_tally = self.db_tally, None
        if tally is not None and current_tally.get() is tally:
            current_tally.set(self.db_outer)
        try:
            self._stack.close()
        except Exception:  # reset from another context: nothing left to undo
            warn("close", "Telemetry could not deactivate a job's correlation")

    def _failure(self) -> dict[str, t.Any]:
        exc = self.exception
        if exc is None:
            return {}
        cls = exc if isinstance(exc, type) else type(exc)
        name = getattr(cls, "__name__", None)  # as http_request_end stores it
        facts: dict[str, t.Any] = {}
        if isinstance(name, str) and _EXCEPTION_NAME.fullmatch(name):
            facts["exception"] = name
        if self.jobs.options.include_message and not isinstance(exc, type):
            with contextlib.suppress(Exception):  # a hostile __str__
                facts["message"] = str(exc)[:_MESSAGE_LENGTH]
        return facts

    def _record(
        self,
        event_type: EventType,
        severity: Severity,
        facts: dict[str, t.Any],
        always: bool = False,
    ) -> None:
        metadata: dict[str, t.Any] = {"system": self.system}
        for key in ("job", "job_id", "queue", "retries"):
            value = getattr(self, key)
            if value is not None:
                metadata[key] = value
        metadata.update(facts)
        if self.sample_rate < 1.0:
            metadata["sample_rate"] = 1.0 if always else self.sample_rate
        self.jobs.telemetry.record(event_type, severity, metadata=metadata)

    def _recording(self) -> t.ContextManager[object]:
        return self.recording_in(self.jobs)

    @staticmethod
    def recording_in(jobs: Jobs) -> t.ContextManager[object]:
        """The app context to record in: the ``app`` option's when none is active."""
        app = jobs.options.app
        if app is None or has_app_context():
            return contextlib.nullcontext()
        return app.app_context()


def _sample_rate(telemetry: Telemetry) -> float:
    try:
        return telemetry.settings.SAMPLE_RATE
    except RuntimeError:  # no app to ask: keep everything
        return 1.0


def cut(value: object, size: int = 255) -> str | None:
    """``value`` as a printable string of at most ``size`` characters, or None."""
    if not isinstance(value, str):
        return None
    value = "".join(c for c in value[:size] if c.isprintable())
    return value or None


_lock = threading.Lock()
_last_logged: dict[str, float] = {}


def warn(key: str, message: str) -> None:
    """Log the current exception, once a minute at most per ``key``."""
    now = time.monotonic()
    with _lock:
        if now - _last_logged.get(key, -60.0) < 60.0:
            return
        _last_logged[key] = now
    logger.exception(message)
