"""The Flask extension: wires the http, domain and storage layers together.

:meta private: ``Telemetry`` is exported by ``flask_telemetry``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import re
import typing as t
import weakref

from flask import Flask, current_app, has_app_context

from . import reading
from ._config import DEFAULTS, ConfigVars, Settings, load_settings, unknown_keys
from .cli import telemetry_cli
from .domain.correlation import Correlation
from .domain.delivery.background import BackgroundDelivery
from .domain.delivery.batch import BatchStore
from .domain.delivery.breaker import CircuitBreaker
from .domain.delivery.protocol import Delivery
from .domain.delivery.stats import Stats
from .domain.delivery.sync import SyncDelivery
from .domain.log import RateLimitedLog, logger
from .domain.privacy import Privacy
from .domain.recorder import Recorder
from .domain.request_end import RequestEndPolicy
from .domain.sampling import Sampler
from .domain.timing import Timed
from .http.correlation import current_correlation
from .http.hooks import ActorLoader, RequestTelemetry
from .http.routes import RouteRules
from .reading import rollups
from .storage.model import trace_model
from .storage.pool import own_pool_engine
from .storage.rollup_model import rollup_model
from .storage.vocabulary import ActorType, EventType, Severity
from .storage.writer import TraceWriter

if t.TYPE_CHECKING:
    import sqlalchemy as sa
    from flask_sqlalchemy import SQLAlchemy

_EVENT_VALUE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclasses.dataclass(kw_only=True, eq=False)
class _State:
    """Everything telemetry keeps for one application.

    Private: reached through the accessors of :class:`Telemetry`.
    """

    owner: Telemetry
    settings: Settings
    model: type[t.Any]
    #: The model of ``telemetry_rollups`` (None unless TELEMETRY_ROLLUPS).
    rollup_model: type[t.Any] | None
    engine: t.Callable[[], sa.Engine]
    stats: Stats
    breaker: CircuitBreaker
    recorder: Recorder
    request: RequestTelemetry

    @property
    def delivery(self) -> Delivery:
        """Where the recorder hands events (the recorder holds it)."""
        return self.recorder.delivery


class Telemetry:
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
        self._states: weakref.WeakSet[_State] = weakref.WeakSet()
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
        model = trace_model(db, settings.bind_key)
        state = self._build_state(app, db, settings, model)
        app.extensions["telemetry"] = state
        app.cli.add_command(telemetry_cli)
        self._states.add(state)
        if settings.enabled:
            state.request.register(app)

    def _build_state(
        self, app: Flask, db: SQLAlchemy, settings: Settings, model: type[t.Any]
    ) -> _State:
        bind_key = settings.bind_key

        def engine() -> sa.Engine:
            with app.app_context():
                return db.engines[bind_key]

        own: list[sa.Engine] = []

        def writer_engine() -> sa.Engine:
            # The application's default engine: telemetry writes through a
            # pool of its own, so that it never waits for, nor holds, one of
            # the application's connections. A bind of telemetry's own
            # (TELEMETRY_BIND_KEY) is used as it is.
            shared = engine()
            if bind_key is not None:
                return shared
            made = own_pool_engine(shared, timeout=5.0)
            if made is not shared:
                own.append(made)
            return made

        def release() -> None:
            for made in own:
                made.dispose()

        writer = TraceWriter(
            writer_engine,
            model.__table__,
            event_types=self._event_values,
            lock_timeout_ms=settings.lock_timeout_ms,
            statement_timeout_ms=settings.statement_timeout_ms,
            durable_commit=settings.durable_commit,
            # Only a bind of telemetry's own: the application's default
            # engine keeps the connect timeout the application gave it.
            connect_timeout_ms=(
                settings.connect_timeout_ms if settings.bind_key is not None else None
            ),
        )
        stats = Stats()
        log = RateLimitedLog()
        store = BatchStore(writer, stats, log, release=release)
        weakref.finalize(store, release)
        breaker = CircuitBreaker(
            threshold=settings.breaker_threshold, cooldown=settings.breaker_cooldown
        )
        delivery: Delivery
        if settings.delivery == "async" and not writer.shares_connection:
            delivery = BackgroundDelivery(
                store,
                breaker,
                queue_size=settings.queue_size,
                max_bytes=settings.queue_max_bytes,
                batch_size=settings.batch_size,
                flush_interval=settings.flush_interval,
                shutdown_timeout=settings.shutdown_timeout,
                max_retries=settings.max_retries,
                retry_backoff=settings.retry_backoff,
                idle_disconnect=settings.idle_disconnect_s,
            )
        else:
            delivery = SyncDelivery(
                store,
                breaker,
                deadline=settings.sync_deadline_ms / 1000,
                # A failure this slow was a timeout: no use trying again soon.
                trip_after=min(settings.sync_deadline_ms, settings.lock_timeout_ms)
                / 2000,
                max_pending=settings.queue_size,
                max_bytes=settings.queue_max_bytes,
                batch_size=settings.batch_size,
                shutdown_timeout=settings.shutdown_timeout,
                idle_disconnect=settings.idle_disconnect_s,
            )
        recorder = Recorder(
            delivery,
            stats,
            log,
            event_types=self._event_values,
            strict=settings.strict,
            privacy=Privacy(
                redact_keys=settings.redact_keys,
                max_bytes=settings.metadata_max_bytes,
                ip_mode=settings.ip_mode,
                ip_key=settings.ip_hash_key,
            ),
            release=settings.release,
        )
        request = RequestTelemetry(
            recorder,
            header=settings.request_id_header,
            record_requests=settings.record_requests,
            actor_loader=lambda: self._actor_loader,
            rules=RouteRules(settings.exclude),
            policy=RequestEndPolicy(
                slow_ms=settings.slow_request_ms,
                slow_ms_by_endpoint=settings.slow_request_ms_by_endpoint,
                sampler=Sampler(settings.sample_rate),
                keep_status=settings.sample_keep_status,
            ),
            traceparent=settings.traceparent,
        )
        return _State(
            owner=self,
            settings=settings,
            model=model,
            rollup_model=(
                rollup_model(db, settings.bind_key) if settings.rollups else None
            ),
            engine=engine,
            stats=stats,
            breaker=breaker,
            recorder=recorder,
            request=request,
        )

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
        if not state.settings.enabled:
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
        model = self._required().rollup_model
        if model is None:
            raise RuntimeError(
                "Rollups are off: set TELEMETRY_ROLLUPS = True (then run "
                "`flask db migrate` and `flask db upgrade`)."
            )
        return model

    @property
    def settings(self) -> Settings:
        """The validated ``TELEMETRY_*`` settings, read once at ``init_app``."""
        return self._required().settings

    @property
    def engine(self) -> sa.Engine:
        """The engine of the telemetry bind (``TELEMETRY_BIND_KEY``)."""
        return self._required().engine()

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type value :meth:`record` accepts, the app's own included."""
        return self._required().recorder.event_types

    @property
    def delivery(self) -> Delivery:
        """The delivery in use: sync, background (``"async"``), or a capture."""
        return self._required().delivery

    @contextlib.contextmanager
    def delivering_to(self, delivery: Delivery) -> t.Iterator[Delivery]:
        """Hand events to ``delivery`` for the ``with`` block, then put the
        app's own back. For tests: :func:`flask_telemetry.testing.capture`
        uses it."""
        state = self._required()
        previous = state.recorder.delivery
        state.recorder.delivery = delivery
        try:
            yield delivery
        finally:
            state.recorder.delivery = previous

    @property
    def counters(self) -> Stats:
        """The live counters behind :meth:`stats`, for a delivery of the
        application's own (such as a test capture) to keep them exact:
        ``counters.wrote(n)``, ``counters.drop(reason, n)``."""
        return self._required().stats

    def keep_routine(self, trace_id: str | None = None) -> bool:
        """Whether :confval:`TELEMETRY_SAMPLE_RATE` keeps one routine event.

        The decision a fast, successful request gets, for an integration that
        records routine events of its own (a job that ended well): with a W3C
        ``trace_id`` it follows the trace, so a request and its jobs are kept
        or left out together. Call :meth:`count_sampled_out` for an event
        left out, so that :meth:`stats` stays exact.
        """
        return self._required().request.policy.sampler.keep(trace_id)

    def count_sampled_out(self) -> None:
        """Count one routine event left out by sampling (``sampled_out``)."""
        self._required().recorder.skip("sampled_out")

    @staticmethod
    def of(app: Flask) -> Telemetry:
        """The :class:`Telemetry` registered on ``app``.

        :raises RuntimeError: when telemetry is not initialised on ``app``.
        """
        state = app.extensions.get("telemetry")
        if not isinstance(state, _State):
            raise RuntimeError(
                "Telemetry is not initialised on this app: call "
                "telemetry.init_app(app) first."
            )
        return state.owner

    def _required(self) -> _State:
        state = self._state()
        if state is None:
            raise RuntimeError(
                "Telemetry is not initialised on an application (or is registered "
                "on several: use it inside an app context)."
            )
        return state

    def _state(self) -> _State | None:
        if has_app_context():
            # Through _get_current_object(): an attribute read through the
            # proxy costs about as much as the rest of this method.
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            state: _State | None = app.extensions.get("telemetry")
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
            if state.settings.enabled:
                state.recorder.skip("no_app")
                state.recorder.log.error(
                    "no_app",
                    "Telemetry dropped an event recorded outside an app context: "
                    "it is registered on several apps; record() inside "
                    "app.app_context() to say which",
                )

    # -- reading ---------------------------------------------------------------
    # Thin wrappers over flask_telemetry.reading, on the telemetry bind of the
    # current app (an app context is needed).

    def events(
        self,
        *,
        since: reading.TimeBound | None = None,
        until: reading.TimeBound | None = None,
        event_type: EventType | str | t.Iterable[EventType | str] | None = None,
        min_severity: Severity | str | None = None,
        severity: Severity | str | None = None,
        route: str | None = None,
        request_id: str | None = None,
        actor_type: ActorType | str | None = None,
        actor_id: int | None = None,
        limit: int = 100,
        before_id: int | None = None,
        after_id: int | None = None,
    ) -> list[reading.EventRecord]:
        """Stored events, newest first; see :func:`flask_telemetry.reading.events`.

        Pass the last record's ``id`` as ``before_id`` for the next page;
        ``after_id`` keeps the events newer than an id.
        ``route`` takes a glob (``api.*``); ``since`` and ``until`` take a
        datetime or a timedelta back from now.
        """
        engine, table, _ = self._reading()
        return reading.events(
            engine,
            table,
            since=since,
            until=until,
            event_type=event_type,
            min_severity=min_severity,
            severity=severity,
            route=route,
            request_id=request_id,
            actor_type=actor_type,
            actor_id=actor_id,
            limit=limit,
            before_id=before_id,
            after_id=after_id,
        )

    def request_summary(
        self,
        *,
        since: reading.TimeBound,
        until: reading.TimeBound | None = None,
        route: str | None = None,
        release: str | None = None,
    ) -> reading.Summaries:
        """Per-route requests, errors and percentiles from ``http_request_end``
        (a list of :class:`~flask_telemetry.reading.RouteSummary`, with the
        count of rows that could not be read as ``unreadable``); ``release``
        keeps the requests of one release. With ``TELEMETRY_ROLLUPS`` on,
        read from the rollups and the raw rows not folded yet (counts exact,
        percentiles within 1%, any window the rollups keep); see
        :func:`flask_telemetry.reading.request_summary` and
        :func:`flask_telemetry.reading.rollups.summary`."""
        engine, table, settings = self._reading()
        model = self._required().rollup_model
        if model is not None:
            return rollups.summary(
                engine,
                table,
                model.__table__,
                since=since,
                until=until,
                route=route,
                release=release,
                retention=_retention(settings),
            )
        return reading.request_summary(
            engine, table, since=since, until=until, route=route, release=release
        )

    def rollup(self, *, since: reading.TimeBound | None = None) -> rollups.RollupResult:
        """Fold the request ends of closed minutes into ``telemetry_rollups``
        and age old buckets (``TELEMETRY_ROLLUPS`` must be on).

        Without ``since``, from where the last rollup stopped (less
        ``TELEMETRY_ROLLUP_GRACE_S``); with it (a datetime or a timedelta
        back from now), from the start of that UTC day: to backfill, or to
        count rows that arrived later than the grace period. Idempotent, and
        safe to run in several processes at once."""
        engine, table, settings = self._reading()
        return rollups.rollup(
            engine,
            table,
            self.rollup_model.__table__,
            since=since,
            grace=dt.timedelta(seconds=settings.rollup_grace_s),
            retention=_retention(settings),
        )

    def event_counts(
        self,
        *,
        since: reading.TimeBound,
        until: reading.TimeBound | None = None,
        route: str | None = None,
    ) -> list[reading.EventCount]:
        """(event_type, severity, count) of the window, most frequent first;
        ``route`` (a name or a glob) keeps the events of matching endpoints."""
        engine, table, _ = self._reading()
        return reading.event_counts(
            engine, table, since=since, until=until, route=route
        )

    def prune(
        self,
        *,
        older_than_days: float | None = None,
        batch_size: int = 5000,
        max_seconds: float | None = None,
        dry_run: bool = False,
    ) -> reading.PruneResult:
        """Delete events older than ``older_than_days`` (default
        ``TELEMETRY_RETENTION_DAYS``) in short batches; see
        :func:`flask_telemetry.reading.prune`."""
        engine, table, settings = self._reading()
        days = settings.retention_days if older_than_days is None else older_than_days
        if isinstance(days, bool) or not isinstance(days, (int, float)) or days < 0:
            raise ValueError(f"older_than_days must be a number >= 0, not {days!r}.")
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        if self._required().rollup_model is not None and not dry_run:
            # What is about to be deleted is folded first: the rollups keep
            # its figures past the raw retention.
            self.rollup()
        return reading.prune(
            engine,
            table,
            cutoff=cutoff,
            batch_size=batch_size,
            max_seconds=max_seconds,
            dry_run=dry_run,
        )

    def _reading(self) -> tuple[sa.Engine, sa.Table, Settings]:
        if not has_app_context():
            raise RuntimeError(
                "Reading telemetry needs an application context "
                "(with app.app_context(): ...)."
            )
        state = self._required()
        return state.engine(), state.model.__table__, state.settings

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
        if state is None or state.owner is not self:
            raise RuntimeError("Call telemetry.init_app(app) before init_dashboard.")
        if authorize is None:
            logger.warning(
                "init_dashboard() without authorize: the dashboard is not served."
            )
            return
        if not callable(authorize):
            raise ValueError(f"authorize must be a callable, not {authorize!r}.")
        from .dashboard import make_blueprint

        # Not excluded by endpoint: a refused request is recorded, and
        # answered, like any other 404 of the app; an allowed one calls
        # _forget_request().
        app.register_blueprint(
            make_blueprint(self, authorize=authorize), url_prefix=url_prefix
        )

    def _forget_request(self) -> None:
        """Leave the current request out of telemetry: no ``http_request_end``,
        no request id header (the dashboard's allowed requests)."""
        state = current_app.extensions.get("telemetry")
        if state is not None and state.owner is self:
            state.request.forget()


def _retention(settings: Settings) -> rollups.Retention:
    minutes, hours, days = settings.rollup_retention_days
    return rollups.Retention(minutes=minutes, hours=hours, days=days)


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
