"""Slow statements on the application's engines, as ``db_query_slow``.

::

    from flask_telemetry.integrations import sqlalchemy as telemetry_sqlalchemy

    app.config["TELEMETRY_SLOW_QUERY_MS"] = 200
    telemetry_sqlalchemy.instrument(app, telemetry)

or ``instrument(app, telemetry, slow_ms=200)``. Every engine of the app's
Flask-SQLAlchemy (the default database and every bind) is timed from
``before_cursor_execute`` to ``after_cursor_execute``. A statement slower
than the threshold is recorded with the SQL as the dialect compiled it
(placeholders, never the parameter values), cut to ``max_statement_chars``,
its duration and the bind key. Telemetry's own statements are never
recorded.
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


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """The options of :func:`instrument`."""

    #: The Flask-SQLAlchemy instance, default ``app.extensions["sqlalchemy"]``.
    db: SQLAlchemy | None = None
    #: Longer statements are cut to this many characters, ending with ``...``.
    max_statement_chars: int = DEFAULT_MAX_STATEMENT_CHARS
    #: Statements slower than this, in milliseconds, are recorded. None (the
    #: default): the app's ``TELEMETRY_SLOW_QUERY_MS``, read when
    #: :func:`instrument` is called.
    slow_ms: float | None = None

    def __post_init__(self) -> None:
        chars = self.max_statement_chars
        if isinstance(chars, bool) or not (isinstance(chars, int) and chars >= 16):
            raise ValueError(
                f"max_statement_chars must be an integer >= 16, not {chars!r}."
            )
        if self.slow_ms is not None:
            _check_threshold("slow_ms", self.slow_ms)

    def threshold_ms(self, app: Flask) -> float | None:
        """The threshold in force on ``app``; None when nothing is timed."""
        if app.config.get(ConfigVars.ENABLED) is False:
            return None
        if self.slow_ms is not None:
            return self.slow_ms
        threshold_ms = app.config.get(ConfigVars.SLOW_QUERY_MS)
        if threshold_ms is not None:
            _check_threshold(ConfigVars.SLOW_QUERY_MS, threshold_ms)
        return t.cast(float | None, threshold_ms)


def _check_threshold(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(
            f"{name} must be a number of milliseconds >= 0 or None, not {value!r}."
        )


@dataclasses.dataclass(kw_only=True, eq=False)
class _Instrumented:
    listeners: list[tuple[sa.Engine, str, t.Callable[..., None]]]

    def detach(self) -> None:
        for engine, name, fn in self.listeners:
            if sa.event.contains(engine, name, fn):
                sa.event.remove(engine, name, fn)


def instrument(app: Flask, telemetry: Telemetry, **options: t.Any) -> Flask:
    """Record the app's slow statements when a threshold is set; return ``app``.

    Call it after ``db.init_app(app)`` and ``telemetry.init_app(app)``.
    Nothing is listened to while the threshold is ``None`` (the default of
    ``TELEMETRY_SLOW_QUERY_MS``) or ``TELEMETRY_ENABLED`` is False: then
    :func:`is_instrumented` is False. Calling it again applies the options
    and the configuration of then, and listens to each event once.

    :param options: the fields of :class:`Options`: ``db``,
        ``max_statement_chars`` and ``slow_ms`` (default
        ``TELEMETRY_SLOW_QUERY_MS``).
    :raises ValueError: the threshold is not a number >= 0, or an option's
        value is refused.
    """
    settings = Options(**options)
    threshold_ms = settings.threshold_ms(app)
    if threshold_ms is None:
        uninstrument(app)
        return app
    db = settings.db
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
            max_chars=settings.max_statement_chars,
        )
        before, after, failed = _listeners(threshold, slow)
        for name, fn in (
            ("before_cursor_execute", before),
            ("after_cursor_execute", after),
            ("handle_error", failed),
            ("checkin", _checked_in(app, telemetry)),
        ):
            listeners.append((engine, name, fn))
    previous = app.extensions.pop(_EXTENSION, None)
    if previous is not None:
        previous.detach()
    else:
        app.teardown_request(_record_pending)
    for engine, name, fn in listeners:
        sa.event.listen(engine, name, fn)
    app.extensions[_EXTENSION] = _Instrumented(listeners=listeners)
    return app


def uninstrument(app: Flask) -> None:
    """Stop timing the app's statements; nothing when it is not instrumented."""
    state = app.extensions.pop(_EXTENSION, None)
    if state is None:
        return
    teardowns = app.teardown_request_funcs.get(None, [])
    if _record_pending in teardowns:
        teardowns.remove(_record_pending)
    state.detach()


def is_instrumented(app: Flask) -> bool:
    """Whether :func:`instrument` is in force on ``app``."""
    return _EXTENSION in app.extensions


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
    "Options",
    "instrument",
    "is_instrumented",
    "uninstrument",
]
