"""The wiring: one application's settings turned into delivery, recorder,
request hooks and reader, kept as :class:`AppState` in
``app.extensions["telemetry"]``.

:meta private: :class:`flask_telemetry.Telemetry` is the façade over it; the
``flask telemetry`` commands, the dashboard and :mod:`flask_telemetry.testing`
read the application's state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing as t
import weakref

from ._read_api import ReadApi
from .domain.delivery.background import BackgroundDelivery
from .domain.delivery.batch import BatchStore
from .domain.delivery.breaker import CircuitBreaker
from .domain.delivery.protocol import Delivery
from .domain.delivery.stats import Stats
from .domain.delivery.sync import SyncDelivery
from .domain.log import RateLimitedLog
from .domain.privacy import Privacy
from .domain.recorder import Recorder
from .domain.request_end import RequestEndPolicy
from .domain.sampling import Sampler
from .http.hooks import ActorLoader, RequestTelemetry
from .http.routes import RouteRules
from .storage.pool import own_pool_engine
from .storage.rollup_model import rollup_model
from .storage.writer import TraceWriter

if t.TYPE_CHECKING:
    import sqlalchemy as sa
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from ._config import Settings


@dataclasses.dataclass(kw_only=True, eq=False)
class AppState(ReadApi):
    """Everything telemetry keeps for one application.

    The ``Telemetry`` that registered it is ``owner``; the read API
    (``events``, ``request_summary``, ...) reads this application's bind.
    """

    owner: object
    settings: Settings
    model: type[t.Any]
    #: The model of ``telemetry_rollups`` (None unless TELEMETRY_ROLLUPS).
    rollup_model: type[t.Any] | None
    engine: t.Callable[[], sa.Engine]
    stats: Stats
    breaker: CircuitBreaker
    recorder: Recorder
    request: RequestTelemetry

    def _readable(self) -> AppState:
        return self

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type value the recorder accepts, the app's own included."""
        return self.recorder.event_types

    @property
    def delivery(self) -> Delivery:
        """Where the recorder hands events (the recorder holds it)."""
        return self.recorder.delivery

    @contextlib.contextmanager
    def delivering_to(self, delivery: Delivery) -> t.Iterator[Delivery]:
        """Hand events to ``delivery`` for the ``with`` block, then put the
        app's own back (:func:`flask_telemetry.testing.capture`)."""
        previous = self.recorder.delivery
        self.recorder.delivery = delivery
        try:
            yield delivery
        finally:
            self.recorder.delivery = previous

    def keep_routine(self, trace_id: str | None = None) -> bool:
        """Whether :confval:`TELEMETRY_SAMPLE_RATE` keeps one routine event.

        The decision a fast, successful request gets, for an integration that
        records routine events of its own (a job that ended well): with a W3C
        ``trace_id`` it follows the trace, so a request and its jobs are kept
        or left out together. Call :meth:`count_sampled_out` for an event
        left out, so that ``stats()`` stays exact.
        """
        return self.request.policy.sampler.keep(trace_id)

    def count_sampled_out(self) -> None:
        """Count one routine event left out by sampling (``sampled_out``)."""
        self.recorder.skip("sampled_out")


def app_state(app: Flask) -> AppState:
    """The telemetry state of ``app``.

    :raises RuntimeError: when telemetry is not initialised on ``app``.
    """
    state = app.extensions.get("telemetry")
    if not isinstance(state, AppState):
        raise RuntimeError(
            "Telemetry is not initialised on this app: call "
            "telemetry.init_app(app) first."
        )
    return state


def build_state(
    app: Flask,
    db: SQLAlchemy,
    settings: Settings,
    model: type[t.Any],
    *,
    owner: object,
    event_types: tuple[str, ...],
    actor_loader: t.Callable[[], ActorLoader | None],
) -> AppState:
    """Wire ``settings`` into writer, delivery, recorder and request hooks."""
    bind_key = settings.bind_key

    def engine() -> sa.Engine:
        with app.app_context():
            return db.engines[bind_key]

    stats = Stats()
    log = RateLimitedLog()
    breaker = CircuitBreaker(
        threshold=settings.breaker_threshold, cooldown=settings.breaker_cooldown
    )
    recorder = Recorder(
        _delivery(settings, engine, model.__table__, event_types, stats, log, breaker),
        stats,
        log,
        event_types=event_types,
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
        actor_loader=actor_loader,
        rules=RouteRules(settings.exclude),
        policy=RequestEndPolicy(
            slow_ms=settings.slow_request_ms,
            slow_ms_by_endpoint=settings.slow_request_ms_by_endpoint,
            sampler=Sampler(settings.sample_rate),
            keep_status=settings.sample_keep_status,
        ),
        traceparent=settings.traceparent,
    )
    return AppState(
        owner=owner,
        settings=settings,
        model=model,
        rollup_model=rollup_model(db, bind_key) if settings.rollups else None,
        engine=engine,
        stats=stats,
        breaker=breaker,
        recorder=recorder,
        request=request,
    )


def _delivery(
    settings: Settings,
    engine: t.Callable[[], sa.Engine],
    table: sa.Table,
    event_types: tuple[str, ...],
    stats: Stats,
    log: RateLimitedLog,
    breaker: CircuitBreaker,
) -> Delivery:
    """The writer of ``table`` and the delivery in front of it."""
    writer, release = _writer(settings, engine, table, event_types)
    store = BatchStore(writer, stats, log, release=release)
    weakref.finalize(store, release)
    if settings.delivery == "async" and not writer.shares_connection:
        return BackgroundDelivery(
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
    return SyncDelivery(
        store,
        breaker,
        deadline=settings.sync_deadline_ms / 1000,
        # A failure this slow was a timeout: no use trying again soon.
        trip_after=min(settings.sync_deadline_ms, settings.lock_timeout_ms) / 2000,
        max_pending=settings.queue_size,
        max_bytes=settings.queue_max_bytes,
        batch_size=settings.batch_size,
        shutdown_timeout=settings.shutdown_timeout,
        idle_disconnect=settings.idle_disconnect_s,
    )


def _writer(
    settings: Settings,
    engine: t.Callable[[], sa.Engine],
    table: sa.Table,
    event_types: tuple[str, ...],
) -> tuple[TraceWriter, t.Callable[[], None]]:
    """The writer of ``table``, and what disposes of the pool it made."""
    bind_key = settings.bind_key
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
        table,
        event_types=event_types,
        lock_timeout_ms=settings.lock_timeout_ms,
        statement_timeout_ms=settings.statement_timeout_ms,
        durable_commit=settings.durable_commit,
        # Only a bind of telemetry's own: the application's default
        # engine keeps the connect timeout the application gave it.
        connect_timeout_ms=(
            settings.connect_timeout_ms if bind_key is not None else None
        ),
    )
    return writer, release
