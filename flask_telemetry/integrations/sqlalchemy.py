"""Slow statements on the application's engines, as ``db_query_slow``.

::

    from flask_telemetry.integrations import sqlalchemy as telemetry_sqlalchemy

    app.config["TELEMETRY_SLOW_QUERY_MS"] = 200
    telemetry_sqlalchemy.instrument(app, telemetry)

Every engine of the app's Flask-SQLAlchemy (the default database and every
bind) is timed from ``before_cursor_execute`` to ``after_cursor_execute``. A
statement slower than ``TELEMETRY_SLOW_QUERY_MS`` is recorded with the SQL
as the dialect compiled it (placeholders, never the parameter values), cut
to ``max_statement_chars``, its duration and the bind key. Telemetry's own
statements are never recorded.
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

from flask_telemetry import (
    ConfigVars,
    EventType,
    Severity,
    Telemetry,
    current_request_id,
)

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

#: How much of a statement is kept by default, in characters.
DEFAULT_MAX_STATEMENT_CHARS = 1000
#: The execution option telemetry's writer sets on its own connections.
OWN_CONNECTION_OPTION = "flask_telemetry"

_EXTENSION = "telemetry.sqlalchemy"
_START = "_flask_telemetry_started"
_PENDING = "_telemetry_slow_queries"
_now = time.perf_counter
#: Set while this integration records: what that recording executes (a
#: synchronous delivery's INSERT) is telemetry's own.
_recording: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "flask_telemetry_recording_slow_query", default=False
)
logger = logging.getLogger("flask_telemetry")


@dataclasses.dataclass(kw_only=True, eq=False)
class _Instrumented:
    listeners: list[tuple[sa.Engine, str, t.Callable[..., None]]]


def instrument(
    app: Flask,
    telemetry: Telemetry,
    *,
    db: SQLAlchemy | None = None,
    max_statement_chars: int = DEFAULT_MAX_STATEMENT_CHARS,
) -> bool:
    """Record the app's slow statements when ``TELEMETRY_SLOW_QUERY_MS`` is set.

    Call it after ``db.init_app(app)`` and ``telemetry.init_app(app)``.
    Returns True when statements are now timed, False when the key is
    ``None`` (the default) or ``TELEMETRY_ENABLED`` is False: nothing is
    listened to then. Calling it again is a no-op while the app is
    instrumented.

    :param db: the Flask-SQLAlchemy instance, default
        ``app.extensions["sqlalchemy"]``.
    :param max_statement_chars: longer statements are cut to this many
        characters, ending with ``...``.
    :raises ValueError: ``TELEMETRY_SLOW_QUERY_MS`` is not a number >= 0.
    """
    if _EXTENSION in app.extensions:
        return True
    key = ConfigVars.SLOW_QUERY_MS
    threshold_ms = app.config.get(key)
    if threshold_ms is None or app.config.get(ConfigVars.ENABLED) is False:
        return False
    if (
        isinstance(threshold_ms, bool)
        or not isinstance(threshold_ms, int | float)
        or threshold_ms < 0
    ):
        raise ValueError(
            f"{key} must be a number of milliseconds >= 0 or None, "
            f"not {threshold_ms!r}."
        )
    if isinstance(max_statement_chars, bool) or not (
        isinstance(max_statement_chars, int) and max_statement_chars >= 16
    ):
        raise ValueError(
            "max_statement_chars must be an integer >= 16, "
            f"not {max_statement_chars!r}."
        )
    if db is None:
        db = app.extensions.get("sqlalchemy")
        if db is None:
            raise RuntimeError(
                "Slow queries need Flask-SQLAlchemy: call db.init_app(app) first, "
                "or pass db=."
            )
    with app.app_context():
        engines = dict(db.engines)
        own_table = telemetry.trace_model.__table__.name
    threshold = threshold_ms / 1000.0
    listeners: list[tuple[sa.Engine, str, t.Callable[..., None]]] = []
    for bind_key, engine in engines.items():
        slow = _Slow(
            app=app,
            telemetry=telemetry,
            bind_key=bind_key,
            threshold_ms=threshold_ms,
            own_table=own_table,
            max_chars=max_statement_chars,
        )
        before, after, failed = _listeners(threshold, slow)
        for name, fn in (
            ("before_cursor_execute", before),
            ("after_cursor_execute", after),
            ("handle_error", failed),
            ("checkin", _checked_in(app, telemetry)),
        ):
            sa.event.listen(engine, name, fn)
            listeners.append((engine, name, fn))
    app.teardown_request(_record_pending)
    app.extensions[_EXTENSION] = _Instrumented(listeners=listeners)
    return True


def uninstrument(app: Flask) -> None:
    """Stop timing the app's statements; nothing when it is not instrumented."""
    state = app.extensions.pop(_EXTENSION, None)
    if state is None:
        return
    teardowns = app.teardown_request_funcs.get(None, [])
    if _record_pending in teardowns:
        teardowns.remove(_record_pending)
    for engine, name, fn in state.listeners:
        if sa.event.contains(engine, name, fn):
            sa.event.remove(engine, name, fn)


def _listeners(
    threshold: float, slow: _Slow
) -> tuple[t.Callable[..., None], t.Callable[..., None], t.Callable[..., None]]:
    # The cost of every statement: keep these two as small as they are.
    # The start goes on the execution context, which exists once per
    # execution (an executemany included) and is gone with it.
    now = _now

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

    return before, after, failed


def _record(telemetry: Telemetry, metadata: dict[str, t.Any]) -> None:
    token = _recording.set(True)
    try:
        telemetry.record(EventType.DB_QUERY_SLOW, Severity.WARNING, metadata=metadata)
    finally:
        _recording.reset(token)


def _checked_in(app: Flask, telemetry: Telemetry) -> t.Callable[..., None]:
    def checkin(dbapi_connection: t.Any, record: t.Any) -> None:
        try:
            pending = record.info.pop(_PENDING, None) if record is not None else None
            if not pending:
                return
            with contextlib.ExitStack() as stack:
                if not has_app_context():
                    stack.enter_context(app.app_context())
                for corr, metadata in pending:
                    if corr is None:
                        _record(telemetry, metadata)
                    else:
                        with corr.activate():
                            _record(telemetry, metadata)
        except Exception:
            logger.exception("Telemetry could not record a slow query")

    return checkin


def _record_pending(exc: BaseException | None = None) -> None:
    """Teardown of a request: record its slow statements."""
    try:
        pending = g.pop(_PENDING, None)
        for telemetry, metadata in pending or ():
            _record(telemetry, metadata)
    except Exception:
        logger.exception("Telemetry could not record a slow query")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class _Slow:
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
            if _recording.get() or self._is_own(conn, statement, context):
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
                pending = g.setdefault(_PENDING, [])
                pending.append((self.telemetry, metadata))
            else:
                # Outside a request: when the connection goes back to the
                # pool, for the same reason, with the correlation of now.
                corr = self.telemetry.context() if current_request_id() else None
                pending = conn.info.setdefault(_PENDING, [])
                pending.append((corr, metadata))
        except Exception:
            logger.exception("Telemetry could not record a slow query")

    def _is_own(self, conn: sa.Connection, statement: t.Any, context: t.Any) -> bool:
        # Telemetry's writer marks its connections; reads and prunes of the
        # table (and a writer that does not mark) are known by the table.
        options = getattr(context, "execution_options", None) or {}
        if options.get(OWN_CONNECTION_OPTION):
            return True
        return self.own_table in str(statement)


__all__ = [
    "DEFAULT_MAX_STATEMENT_CHARS",
    "OWN_CONNECTION_OPTION",
    "instrument",
    "uninstrument",
]
