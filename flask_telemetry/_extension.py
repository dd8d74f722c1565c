"""The Flask extension: wires the http, domain and storage layers together.

:meta private: ``Telemetry`` is exported by ``flask_telemetry``.
"""

from __future__ import annotations

import enum
import re
import typing as t
import weakref

from flask import Flask, current_app, has_app_context

from ._config import DEFAULTS, ConfigVars, load_settings, unknown_keys
from ._read_api import ReadApi, required_rollups
from ._wiring import AppState, app_state, build_state
from .cli import telemetry_cli
from .domain.correlation import Correlation
from .domain.delivery.protocol import Delivery
from .domain.log import logger
from .domain.timing import Timed
from .http.correlation import current_correlation
from .http.hooks import ActorLoader
from .storage.model import trace_model
from .storage.vocabulary import ActorType, EventType, Severity

if t.TYPE_CHECKING:
    import sqlalchemy as sa
    from flask_sqlalchemy import SQLAlchemy

    from ._config import Settings

_EVENT_VALUE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Telemetry(ReadApi):
    """Records best-effort tracing events into ``telemetry_traces``.

    :param app: initialise on this app now (or call :meth:`init_app` later).
    :param db: the Flask-SQLAlchemy instance; defaults to the one registered
        on the app as ``app.extensions["sqlalchemy"]``.
    :param event_types: ``str`` Enums of the application's own event types,
        accepted by :meth:`record` beside :class:`EventType`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        event_types: t.Iterable[type[enum.Enum]] = (),
    ) -> None:
        self._db = db
        self._event_values = _event_values(event_types)
        self._actor_loader: ActorLoader | None = None
        self._states: weakref.WeakSet[AppState] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register telemetry on ``app``: config defaults, model, hooks, delivery."""
        if "telemetry" in app.extensions:
            raise RuntimeError(
                "A 'Telemetry' instance is already registered on this app."
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        settings = load_settings(app.config)
        for name, close in unknown_keys(app.config):
            hint = f"; did you mean {close}?" if close else ""
            logger.warning("%s is not a flask_telemetry setting%s", name, hint)
        db = self._db if self._db is not None else app.extensions.get("sqlalchemy")
        if db is None:
            raise RuntimeError(
                "flask_telemetry needs Flask-SQLAlchemy: call db.init_app(app) before "
                "telemetry.init_app(app), or pass Telemetry(db=db)."
            )
        state = build_state(
            app,
            db,
            settings,
            trace_model(db, settings.BIND_KEY),
            owner=self,
            event_types=self._event_values,
            actor_loader=lambda: self._actor_loader,
        )
        app.extensions["telemetry"] = state
        app.cli.add_command(telemetry_cli)
        self._states.add(state)
        if settings.ENABLED:
            state.request.register(app)

    # -- public API -----------------------------------------------------------

    def record(
        self,
        event_type: EventType | enum.Enum | str,
        severity: Severity | str = Severity.INFO,
        *,
        metadata: t.Mapping[str, t.Any] | None = None,
        actor_type: ActorType | str | None = None,
        actor_id: int | None = None,
    ) -> None:
        """Record one event. Never raises for storage failures.

        Inside a request the request id, endpoint, client address, user agent
        and actor (from :meth:`actor_loader`) are filled in; outside one the
        actor is ``system``. Bad arguments are dropped, counted and logged,
        or raised as :class:`TelemetryError` with ``TELEMETRY_STRICT``.
        """
        state = self._state()
        if state is None:
            self._unrouted()
            return
        if not state.settings.ENABLED:
            return
        state.request.record(
            event_type,  # type: ignore[arg-type]
            severity,
            metadata=metadata,
            actor_type=actor_type,
            actor_id=actor_id,
        )

    def timed(
        self,
        event_type: EventType | enum.Enum | str,
        *,
        threshold_ms: float,
        severity: Severity | str = Severity.WARNING,
        metadata: t.Mapping[str, t.Any] | None = None,
        on_error: EventType | enum.Enum | str | None = None,
        error_severity: Severity | str = Severity.ERROR,
    ) -> Timed:
        """Time a block (``with``) or every call of a function (decorator).

        Records ``event_type`` only when it took longer than
        ``threshold_ms``, with ``duration_ms`` and ``threshold_ms`` in the
        metadata; records ``on_error`` (for example
        ``EventType.EXTERNAL_CALL_FAIL``) when it raised, if given. The
        exception always propagates::

            with telemetry.timed(EventType.EXTERNAL_CALL_SLOW, threshold_ms=300,
                                 metadata={"service": "billing"},
                                 on_error=EventType.EXTERNAL_CALL_FAIL):
                billing.charge(order)
        """
        return Timed(
            self.record,
            event_type,
            threshold_ms=threshold_ms,
            severity=severity,
            metadata=metadata,
            on_error=on_error,
            error_severity=error_severity,
        )

    def context(self) -> Correlation:
        """The current request's ids, to carry into a thread or a job.

        Returns a :class:`Correlation` (request id and W3C trace id): pass it
        along and wrap the work in ``with corr.activate():`` so that its
        events and log records carry the request id. Outside a request it
        returns the active correlation, or a new one.
        """
        return current_correlation() or Correlation.new()

    def actor_loader(self, callback: ActorLoader) -> ActorLoader:
        """Register a function returning ``(actor_type, actor_id)`` or None.

        Called when an event is recorded inside a request; use as a decorator.
        """
        self._actor_loader = callback
        return callback

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait up to ``timeout`` seconds; True when everything accepted is stored
        or accounted for as dropped."""
        state = self._state()
        return True if state is None else state.delivery.flush(timeout)

    def stats(self) -> dict[str, t.Any]:
        """Counters of the current app: accepted, written, dropped by reason, ..."""
        state = self._state()
        if state is None:
            return {}
        snapshot = state.stats.snapshot()
        snapshot["breaker"] = state.breaker.state
        snapshot["delivery"] = type(state.delivery).__name__
        return snapshot

    def shutdown(self, timeout: float | None = None) -> None:
        """Flush with a deadline and stop the writer (done at exit automatically)."""
        state = self._state()
        if state is not None:
            state.delivery.close(timeout)

    # -- accessors of the current app's telemetry -----------------------------
    #
    # Inside an app context they answer for that app; outside one, for the
    # only app telemetry is registered on. Otherwise they raise RuntimeError.

    @property
    def trace_model(self) -> type[t.Any]:
        """The Flask-SQLAlchemy model mapped to ``telemetry_traces``.

        The ``metadata`` column's attribute is ``metadata_`` (``metadata`` is
        reserved by SQLAlchemy): ``row.metadata_``.
        """
        return self._required().model

    @property
    def rollup_model(self) -> type[t.Any]:
        """The Flask-SQLAlchemy model mapped to ``telemetry_rollups``; a
        RuntimeError unless ``TELEMETRY_ROLLUPS`` is on."""
        return required_rollups(self._required())

    @property
    def settings(self) -> Settings:
        """The validated ``TELEMETRY_*`` settings, read once at ``init_app``:
        one attribute per :class:`ConfigVars` name (``settings.RETENTION_DAYS``)."""
        return self._required().settings

    @property
    def engine(self) -> sa.Engine:
        """The engine of the telemetry bind (``TELEMETRY_BIND_KEY``)."""
        return self._required().engine()

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type value :meth:`record` accepts, the app's own included."""
        return self._required().event_types

    @property
    def delivery(self) -> Delivery:
        """The delivery in use: sync, background (``"async"``), or a capture."""
        return self._required().delivery

    @staticmethod
    def of(app: Flask) -> Telemetry:
        """The :class:`Telemetry` registered on ``app``.

        :raises RuntimeError: when telemetry is not initialised on ``app``.
        """
        return t.cast(Telemetry, app_state(app).owner)

    def _required(self) -> AppState:
        state = self._state()
        if state is None:
            raise RuntimeError(
                "Telemetry is not initialised on an application (or is registered "
                "on several: use it inside an app context)."
            )
        return state

    def _state(self) -> AppState | None:
        if has_app_context():
            # Through _get_current_object(): an attribute read through the
            # proxy costs about as much as the rest of this method.
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            state: AppState | None = app.extensions.get("telemetry")
            if state is not None and state.owner is self:
                return state  # not t.cast(): a call on every record()
        states = list(self._states)
        if len(states) == 1:
            return states[0]
        return None

    def _unrouted(self) -> None:
        # Recorded with no app context while serving several apps: the event
        # could belong to any of them, so each counts it (and says so).
        for state in list(self._states):
            if state.settings.ENABLED:
                state.recorder.skip("no_app")
                state.recorder.log.error(
                    "no_app",
                    "Telemetry dropped an event recorded outside an app context: "
                    "it is registered on several apps; record() inside "
                    "app.app_context() to say which",
                )

    # -- reading: the methods of ReadApi, on the current app's bind ----------

    def _readable(self) -> AppState:
        if not has_app_context():
            raise RuntimeError(
                "Reading telemetry needs an application context "
                "(with app.app_context(): ...)."
            )
        return self._required()

    # -- dashboard ---

    def init_dashboard(
        self,
        app: Flask,
        *,
        url_prefix: str = "/_telemetry",
        authorize: t.Callable[[], t.Any] | None = None,
    ) -> None:
        """Serve the read-only dashboard pages at ``url_prefix`` on ``app``.

        ``authorize()`` is called in every dashboard request and must return
        true to let it through; any other request gets 404. Without
        ``authorize`` nothing is registered. The dashboard's own requests
        are not recorded. Call after :meth:`init_app`.
        """
        state = app.extensions.get("telemetry")
        if not isinstance(state, AppState) or state.owner is not self:
            raise RuntimeError("Call telemetry.init_app(app) before init_dashboard.")
        if authorize is None:
            logger.warning(
                "init_dashboard() without authorize: the dashboard is not served."
            )
            return
        if not callable(authorize):
            raise ValueError(f"authorize must be a callable, not {authorize!r}.")
        from .dashboard.blueprint import make_blueprint

        # Not excluded by endpoint: a refused request is recorded, and
        # answered, like any other 404 of the app; an allowed one calls
        # forgets it (state.request.forget()).
        app.register_blueprint(
            make_blueprint(state, authorize=authorize), url_prefix=url_prefix
        )


def _event_values(enums: t.Iterable[type[enum.Enum]]) -> tuple[str, ...]:
    values = []
    for enum_cls in enums:
        if not (
            isinstance(enum_cls, type)
            and issubclass(enum_cls, str)
            and issubclass(enum_cls, enum.Enum)
        ):
            raise ValueError(f"event_types must be str Enums, not {enum_cls!r}.")
        for member in enum_cls:
            if not _EVENT_VALUE.fullmatch(member.value):
                raise ValueError(
                    f"Event type {enum_cls.__name__}.{member.name} = {member.value!r} "
                    "must be lower_snake_case, at most 64 characters."
                )
            values.append(member.value)
    return tuple(values)


__all__ = ["ConfigVars", "Telemetry"]
