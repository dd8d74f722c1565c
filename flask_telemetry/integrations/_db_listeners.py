"""The SQLAlchemy integration's listeners on an app's engines.

Every statement is timed from ``before_cursor_execute`` to
``after_cursor_execute`` (or ``handle_error``) and added to the open tally
of the request or job (:mod:`._db_time`); one slower than the threshold is
recorded as ``db_query_slow`` once its cursor is closed: at the end of the
request, or when its connection goes back to the pool. Telemetry's own
statements are neither counted nor recorded.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import time
import typing as t

import sqlalchemy as sa
from flask import Flask, g, has_app_context, has_request_context

from flask_telemetry import EventType, Severity, Telemetry, current_request_id
from flask_telemetry.integrations._db_time import Tally, current_tally

#: The execution option telemetry's writer sets on its own connections.
OWN_CONNECTION_OPTION = "flask_telemetry"

#: Where a statement's start is kept, on its execution context.
_START = "_flask_telemetry_started"
#: Slow statements waiting to be recorded, on ``g`` in a request, else on
#: the connection's pool record.
PENDING = "_telemetry_slow_queries"
#: The clock of the statements' starts and durations, and of a tally's start.
clock = time.perf_counter
#: Set while this integration records: what that recording executes (a
#: synchronous delivery's INSERT) is telemetry's own.
_recording: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "flask_telemetry_recording_slow_query", default=False
)
logger = logging.getLogger("flask_telemetry")


def statement_listeners(
    threshold: float, slow: Slow, bind_key: str | None
) -> tuple[t.Callable[..., None], t.Callable[..., None], t.Callable[..., None]]:
    # The cost of every statement: keep these two as small as they are.
    # The start goes on the execution context, which exists once per
    # execution (an executemany included) and is gone with it.
    now = clock
    current = current_tally.get

    def before(
        conn: t.Any,
        cursor: t.Any,
        statement: t.Any,
        params: t.Any,
        context: t.Any,
        many: t.Any,
    ) -> None:
        if context is not None:
            setattr(context, _START, now())

    def after(
        conn: t.Any,
        cursor: t.Any,
        statement: t.Any,
        params: t.Any,
        context: t.Any,
        many: t.Any,
    ) -> None:
        started = getattr(context, _START, None)
        if started is not None:
            elapsed = now() - started
            if elapsed > threshold:
                slow(conn, statement, context, elapsed)
            tally = current()
            if tally is not None:
                # A shape seen before in this request: two additions.
                entry = tally.get(statement)
                if entry is None:
                    first(tally, statement, context, elapsed, started)
                else:
                    entry[0] += 1
                    entry[1] += elapsed
                    if entry[2] is not None:
                        entry[2].append((started, elapsed))

    def first(
        tally: Tally, statement: t.Any, context: t.Any, elapsed: float, started: float
    ) -> None:
        try:
            if type(statement) is str and not (
                _recording.get() or slow.is_own(statement, context)
            ):
                tally.add(statement, elapsed, started, bind_key)
        except Exception:
            logger.exception("Telemetry could not count a statement")

    def failed(error: sa.engine.ExceptionContext) -> None:
        # Only on errors: a statement that ran into a lock or statement
        # timeout is often the slowest of all.
        context = error.execution_context
        started = getattr(context, _START, None)
        if started is not None and error.connection is not None:
            elapsed = now() - started
            if elapsed > threshold:
                cause = type(error.original_exception).__name__
                slow(error.connection, error.statement, context, elapsed, cause)
            tally = current()
            if tally is not None:
                entry = tally.get(error.statement)  # type: ignore[arg-type]
                if entry is None:
                    first(tally, error.statement, context, elapsed, started)
                else:
                    entry[0] += 1
                    entry[1] += elapsed

    return before, after, failed


def record_own(
    telemetry: Telemetry,
    metadata: dict[str, t.Any],
    event_type: EventType = EventType.DB_QUERY_SLOW,
    severity: Severity = Severity.WARNING,
) -> None:
    """Record an event of this integration's: what the recording executes
    is telemetry's own (neither counted nor timed as slow)."""
    token = _recording.set(True)
    try:
        telemetry.record(event_type, severity, metadata=metadata)
    finally:
        _recording.reset(token)


def checked_in(app: Flask, telemetry: Telemetry) -> t.Callable[..., None]:
    def checkin(dbapi_connection: t.Any, record: t.Any) -> None:
        try:
            pending = record.info.pop(PENDING, None) if record is not None else None
            if not pending:
                return
            with contextlib.ExitStack() as stack:
                if not has_app_context():
                    stack.enter_context(app.app_context())
                for corr, metadata in pending:
                    if corr is None:
                        record_own(telemetry, metadata)
                    else:
                        with corr.activate():
                            record_own(telemetry, metadata)
        except Exception:
            logger.exception("Telemetry could not record a slow query")

    return checkin


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Slow:
    """Records one slow statement of one engine; never raises."""

    app: Flask
    telemetry: Telemetry
    bind_key: str | None
    threshold_ms: float
    own_table: str
    max_chars: int

    def __call__(
        self,
        conn: sa.Connection,
        statement: t.Any,
        context: t.Any,
        seconds: float,
        error: str | None = None,
    ) -> None:
        try:
            if _recording.get() or self.is_own(statement, context):
                return
            text = str(statement)
            if len(text) > self.max_chars:
                text = text[: self.max_chars - 3] + "..."
            metadata: dict[str, t.Any] = {
                "statement": text,
                "duration_ms": round(seconds * 1000.0, 3),
                "threshold_ms": self.threshold_ms,
                "bind_key": self.bind_key,
                "dialect": conn.dialect.name,
            }
            if error is not None:
                metadata["error"] = error
            if has_request_context():
                # Recorded at the end of the request, once the statement's
                # cursor is closed: a synchronous INSERT made while a SQLite
                # reader is still open would wait for it.
                pending = g.setdefault(PENDING, [])
                pending.append((self.telemetry, metadata))
            else:
                # Outside a request: when the connection goes back to the
                # pool, for the same reason, with the correlation of now.
                corr = self.telemetry.context() if current_request_id() else None
                pending = conn.info.setdefault(PENDING, [])
                pending.append((corr, metadata))
        except Exception:
            logger.exception("Telemetry could not record a slow query")

    def is_own(self, statement: t.Any, context: t.Any) -> bool:
        # Telemetry's writer marks its connections; reads and prunes of the
        # table (and a writer that does not mark) are known by the table.
        options = getattr(context, "execution_options", None) or {}
        if options.get(OWN_CONNECTION_OPTION):
            return True
        return self.own_table in str(statement)
