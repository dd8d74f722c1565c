"""Where the time goes in the database: statements per request, N+1
shapes, slow statements and opt-in query profiles.

::

    from flask_telemetry.integrations import sqlalchemy as telemetry_sqlalchemy

    app.config["TELEMETRY_SLOW_QUERY_MS"] = 200
    telemetry_sqlalchemy.instrument(app, telemetry)

or ``instrument(app, telemetry, slow_ms=200)``. Every engine of the app's
Flask-SQLAlchemy (the default database and every bind) is timed from
``before_cursor_execute`` to ``after_cursor_execute``:

- every request's statements are counted and timed, and its
  ``http_request_end`` carries ``db_count`` and ``db_ms`` (a job's
  ``worker_job_end`` too, with the Celery and RQ integrations);
- a statement shape (the SQL as the dialect compiled it, with placeholders,
  never the parameter values) run ``TELEMETRY_N_PLUS_ONE_THRESHOLD`` times
  or more in one request or job records one ``db_n_plus_one``;
- a statement slower than ``TELEMETRY_SLOW_QUERY_MS`` is recorded as
  ``db_query_slow`` with its SQL cut to ``max_statement_chars``, its
  duration and the bind key;
- ``TELEMETRY_QUERY_PROFILE_RATE`` of the requests record one
  ``db_query_profile`` with every statement's shape, start and duration.

Telemetry's own statements are never counted nor recorded.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import math
import random
import time
import typing as t

import sqlalchemy as sa
from flask import Flask, current_app, g, has_app_context, has_request_context

from flask_telemetry import (
    ConfigVars,
    EventType,
    Severity,
    Telemetry,
    current_request_id,
)
from flask_telemetry.integrations._db_time import Tally, current_tally

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

#: How much of a statement is kept by default, in characters.
DEFAULT_MAX_STATEMENT_CHARS = 1000
#: The execution option telemetry's writer sets on its own connections.
OWN_CONNECTION_OPTION = "flask_telemetry"
#: Distinct statement shapes kept per request or job by default.
DEFAULT_MAX_SHAPES = 200

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
    #: Runs of one shape in one request or job that make an N+1 (0: off).
    #: None (the default): the app's ``TELEMETRY_N_PLUS_ONE_THRESHOLD``.
    n_plus_one_threshold: int | None = None
    #: Share of requests profiled. None (the default): the app's
    #: ``TELEMETRY_QUERY_PROFILE_RATE``.
    query_profile_rate: float | None = None
    #: Distinct shapes kept per request or job; statements of other shapes
    #: past it are counted (under one shape), not kept.
    max_shapes: int = DEFAULT_MAX_SHAPES

    def __post_init__(self) -> None:
        _check_whole("max_statement_chars", self.max_statement_chars, 16)
        if self.slow_ms is not None:
            _check_threshold("slow_ms", self.slow_ms)
        if self.n_plus_one_threshold is not None:
            _check_whole("n_plus_one_threshold", self.n_plus_one_threshold, 0)
        _check_whole("max_shapes", self.max_shapes, 0)
        if self.query_profile_rate is not None:
            _check_share("query_profile_rate", self.query_profile_rate)

    def repeat_threshold(self, app: Flask) -> int:
        """The N+1 threshold in force on ``app`` (0: off)."""
        if self.n_plus_one_threshold is not None:
            return self.n_plus_one_threshold
        key = ConfigVars.N_PLUS_ONE_THRESHOLD
        return key.load({key: app.config.get(key, key.default)})

    def profile_rate(self, app: Flask) -> float:
        """The share of requests profiled on ``app``."""
        if self.query_profile_rate is not None:
            return float(self.query_profile_rate)
        key = ConfigVars.QUERY_PROFILE_RATE
        return key.load({key: app.config.get(key, key.default)})

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


def _check_whole(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, not {value!r}.")


def _check_share(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= 1
    ):
        raise ValueError(f"{name} must be a number from 0.0 to 1.0, not {value!r}.")


@dataclasses.dataclass(kw_only=True, eq=False)
class _Instrumented:
    listeners: list[tuple[sa.Engine, str, t.Callable[..., None]]]
    telemetry: Telemetry
    n_plus_one: int
    profile_rate: float
    max_shapes: int
    max_chars: int

    def detach(self) -> None:
        for engine, name, fn in self.listeners:
            if sa.event.contains(engine, name, fn):
                sa.event.remove(engine, name, fn)

    def tally(self, *, profile: bool) -> Tally:
        rate = self.profile_rate
        return Tally(
            started=_now(),
            profile=profile and rate > 0.0 and (rate >= 1.0 or random.random() < rate),
            max_shapes=self.max_shapes,
        )

    def cut(self, text: str, chars: int | None = None) -> str:
        chars = self.max_chars if chars is None else min(chars, self.max_chars)
        return text if len(text) <= chars else text[: chars - 3] + "..."

    def finish(self, tally: Tally, where: dict[str, t.Any]) -> tuple[int, float, bool]:
        """Record ``tally``'s N+1 shapes and profile; return its figures.

        ``where`` is added to each event's metadata (a job's name)."""
        count, seconds = tally.figures()
        repeated = tally.repeated(self.n_plus_one)
        for shape, entry in repeated:
            _record(
                self.telemetry,
                {
                    **where,
                    "statement": self.cut(shape),
                    "count": entry[0],
                    "total_ms": round(entry[1] * 1000.0, 3),
                    "threshold": self.n_plus_one,
                    "bind_key": entry[3],
                },
                EventType.DB_N_PLUS_ONE,
            )
        if tally.profile:
            metadata = {
                **where,
                "db_count": count,
                "db_ms": round(seconds * 1000.0, 3),
            }
            metadata.update(tally.profile_metadata(self.cut, self._max_bytes()))
            _record(self.telemetry, metadata, EventType.DB_QUERY_PROFILE, Severity.INFO)
        return count, seconds * 1000.0, bool(repeated)

    def _max_bytes(self) -> int:
        try:
            return int(self.telemetry.settings.METADATA_MAX_BYTES) - 512
        except Exception:
            return 8192 - 512


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
    if app.config.get(ConfigVars.ENABLED) is False:
        uninstrument(app)
        return app
    threshold_ms = settings.threshold_ms(app)
    n_plus_one = settings.repeat_threshold(app)
    profile_rate = settings.profile_rate(app)
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
    # No slow threshold: statements are counted, none is slow.
    threshold = math.inf if threshold_ms is None else threshold_ms / 1000.0
    listeners: list[tuple[sa.Engine, str, t.Callable[..., None]]] = []
    for bind_key, engine in engines.items():
        slow = _Slow(
            app=app,
            telemetry=telemetry,
            bind_key=bind_key,
            threshold_ms=threshold_ms or 0.0,
            own_table=own_table,
            max_chars=settings.max_statement_chars,
        )
        before, after, failed = _listeners(threshold, slow, bind_key)
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
        # First of the before_request functions, so that the statements of
        # the others (loading the user) are counted; the teardown runs
        # before telemetry's own (Flask runs teardowns last registered
        # first), so http_request_end carries the figures.
        app.before_request_funcs.setdefault(None, []).insert(0, _begin_request)
        app.teardown_request(_record_pending)
    for engine, name, fn in listeners:
        sa.event.listen(engine, name, fn)
    app.extensions[_EXTENSION] = _Instrumented(
        listeners=listeners,
        telemetry=telemetry,
        n_plus_one=n_plus_one,
        profile_rate=profile_rate,
        max_shapes=settings.max_shapes,
        max_chars=settings.max_statement_chars,
    )
    return app


def uninstrument(app: Flask) -> None:
    """Stop timing the app's statements; nothing when it is not instrumented."""
    state = app.extensions.pop(_EXTENSION, None)
    if state is None:
        return
    teardowns = app.teardown_request_funcs.get(None, [])
    if _record_pending in teardowns:
        teardowns.remove(_record_pending)
    befores = app.before_request_funcs.get(None, [])
    if _begin_request in befores:
        befores.remove(_begin_request)
    state.detach()


def is_instrumented(app: Flask) -> bool:
    """Whether :func:`instrument` is in force on ``app``."""
    return _EXTENSION in app.extensions


def _listeners(
    threshold: float, slow: _Slow, bind_key: str | None
) -> tuple[t.Callable[..., None], t.Callable[..., None], t.Callable[..., None]]:
    # The cost of every statement: keep these two as small as they are.
    # The start goes on the execution context, which exists once per
    # execution (an executemany included) and is gone with it.
    now = _now
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


def _record(
    telemetry: Telemetry,
    metadata: dict[str, t.Any],
    event_type: EventType = EventType.DB_QUERY_SLOW,
    severity: Severity = Severity.WARNING,
) -> None:
    token = _recording.set(True)
    try:
        telemetry.record(event_type, severity, metadata=metadata)
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


def _begin_request() -> None:
    """Before a request: open its tally."""
    try:
        state = current_app.extensions.get(_EXTENSION)
        current_tally.set(None if state is None else state.tally(profile=True))
    except Exception:
        logger.exception("Telemetry could not count a request's statements")


def _record_pending(exc: BaseException | None = None) -> None:
    """Teardown of a request: its figures on the request end, its N+1
    shapes, its profile and its slow statements."""
    try:
        tally = current_tally.get()
        if tally is not None:
            current_tally.set(None)
            state = current_app.extensions.get(_EXTENSION)
            # The request's RequestContext; None for a request telemetry
            # does not record (excluded).
            ctx = g.__dict__.get("_telemetry")
            if state is not None and ctx is not None:
                ctx.db = state.finish(tally, {})
    except Exception:
        logger.exception("Telemetry could not count a request's statements")
    try:
        pending = g.pop(_PENDING, None)
        for telemetry, metadata in pending or ():
            _record(telemetry, metadata)
    except Exception:
        logger.exception("Telemetry could not record a slow query")


def job_tally() -> Tally | None:
    """A tally for a job starting now, when the current app (an app context
    is needed) is instrumented; None otherwise."""
    try:
        if not has_app_context():
            return None
        state: _Instrumented | None = current_app.extensions.get(_EXTENSION)
        if state is None:
            return None
        tally = state.tally(profile=False)
        current_tally.set(tally)
        return tally
    except Exception:
        logger.exception("Telemetry could not count a job's statements")
        return None


def job_figures(tally: Tally, job: str | None) -> dict[str, t.Any]:
    """End a job's ``tally`` (opened by :func:`job_tally`): record its N+1
    shapes and return ``db_count`` and ``db_ms`` for its ``worker_job_end``."""
    try:
        state = current_app.extensions.get(_EXTENSION) if has_app_context() else None
        if state is None:
            return {}
        count, ms, _ = state.finish(tally, {} if job is None else {"job": job})
        return {"db_count": count, "db_ms": round(ms, 3)}
    except Exception:
        logger.exception("Telemetry could not count a job's statements")
        return {}


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

    def is_own(self, statement: t.Any, context: t.Any) -> bool:
        # Telemetry's writer marks its connections; reads and prunes of the
        # table (and a writer that does not mark) are known by the table.
        options = getattr(context, "execution_options", None) or {}
        if options.get(OWN_CONNECTION_OPTION):
            return True
        return self.own_table in str(statement)


__all__ = [
    "DEFAULT_MAX_SHAPES",
    "DEFAULT_MAX_STATEMENT_CHARS",
    "OWN_CONNECTION_OPTION",
    "Options",
    "instrument",
    "is_instrumented",
    "job_figures",
    "job_tally",
    "uninstrument",
]
