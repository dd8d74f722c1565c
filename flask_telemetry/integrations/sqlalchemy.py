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

import dataclasses
import math
import typing as t

import sqlalchemy as sa
from flask import Flask

from flask_telemetry import ConfigVars, Telemetry
from flask_telemetry.integrations._db_listeners import (
    OWN_CONNECTION_OPTION,
    Slow,
    checked_in,
    statement_listeners,
)
from flask_telemetry.integrations._db_requests import (
    EXTENSION,
    Instrumented,
    job_figures,
    job_tally,
)
from flask_telemetry.integrations._db_requests import (
    begin_request as _begin_request,
)
from flask_telemetry.integrations._db_requests import (
    record_pending as _record_pending,
)

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

#: How much of a statement is kept by default, in characters.
DEFAULT_MAX_STATEMENT_CHARS = 1000
#: Distinct statement shapes kept per request or job by default.
DEFAULT_MAX_SHAPES = 200


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
        slow = Slow(
            app=app,
            telemetry=telemetry,
            bind_key=bind_key,
            threshold_ms=threshold_ms or 0.0,
            own_table=own_table,
            max_chars=settings.max_statement_chars,
        )
        before, after, failed = statement_listeners(threshold, slow, bind_key)
        for name, fn in (
            ("before_cursor_execute", before),
            ("after_cursor_execute", after),
            ("handle_error", failed),
            ("checkin", checked_in(app, telemetry)),
        ):
            listeners.append((engine, name, fn))
    previous = app.extensions.pop(EXTENSION, None)
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
    app.extensions[EXTENSION] = Instrumented(
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
    state = app.extensions.pop(EXTENSION, None)
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
    return EXTENSION in app.extensions


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
