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
    bind_key = settings.BIND_KEY

    def engine() -> sa.Engine:
        with app.app_context():
            return db.engines[bind_key]

    stats = Stats()
    log = RateLimitedLog()
    breaker = CircuitBreaker(
        threshold=settings.BREAKER_THRESHOLD, cooldown=settings.BREAKER_COOLDOWN
    )
    recorder = Recorder(
        _delivery(settings, engine, model.__table__, event_types, stats, log, breaker),
        stats,
        log,
        event_types=event_types,
        strict=settings.STRICT,
        privacy=Privacy(
            redact_keys=settings.REDACT_KEYS,
            max_bytes=settings.METADATA_MAX_BYTES,
            ip_mode=settings.IP_MODE,
            ip_key=settings.IP_HASH_KEY,
        ),
        release=settings.RELEASE,
    )
    request = RequestTelemetry(
        recorder,
        header=settings.REQUEST_ID_HEADER,
        record_requests=settings.RECORD_REQUESTS,
        actor_loader=actor_loader,
        rules=RouteRules(settings.EXCLUDE),
        policy=RequestEndPolicy(
            slow_ms=settings.SLOW_REQUEST_MS,
            slow_ms_by_endpoint=settings.SLOW_REQUEST_MS_BY_ENDPOINT,
            sampler=Sampler(settings.SAMPLE_RATE),
            keep_status=settings.SAMPLE_KEEP_STATUS,
        ),
        traceparent=settings.TRACEPARENT,
    )
    return AppState(
        owner=owner,
        settings=settings,
        model=model,
        rollup_model=rollup_model(db, bind_key) if settings.ROLLUPS else None,
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
    if settings.DELIVERY == "async" and not writer.shares_connection:
        return BackgroundDelivery(
            store,
            breaker,
            queue_size=settings.QUEUE_SIZE,
            max_bytes=settings.QUEUE_MAX_BYTES,
            batch_size=settings.BATCH_SIZE,
            flush_interval=settings.FLUSH_INTERVAL,
            shutdown_timeout=settings.SHUTDOWN_TIMEOUT,
            max_retries=settings.MAX_RETRIES,
            retry_backoff=settings.RETRY_BACKOFF,
            idle_disconnect=settings.IDLE_DISCONNECT_S,
        )
    return SyncDelivery(
        store,
        breaker,
        deadline=settings.SYNC_DEADLINE_MS / 1000,
        # A failure this slow was a timeout: no use trying again soon.
        trip_after=min(settings.SYNC_DEADLINE_MS, settings.LOCK_TIMEOUT_MS) / 2000,
        max_pending=settings.QUEUE_SIZE,
        max_bytes=settings.QUEUE_MAX_BYTES,
        batch_size=settings.BATCH_SIZE,
        shutdown_timeout=settings.SHUTDOWN_TIMEOUT,
        idle_disconnect=settings.IDLE_DISCONNECT_S,
    )


def _writer(
    settings: Settings,
    engine: t.Callable[[], sa.Engine],
    table: sa.Table,
    event_types: tuple[str, ...],
) -> tuple[TraceWriter, t.Callable[[], None]]:
    """The writer of ``table``, and what disposes of the pool it made."""
    bind_key = settings.BIND_KEY
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
        lock_timeout_ms=settings.LOCK_TIMEOUT_MS,
        statement_timeout_ms=settings.STATEMENT_TIMEOUT_MS,
        durable_commit=settings.DURABLE_COMMIT,
        # Only a bind of telemetry's own: the application's default
        # engine keeps the connect timeout the application gave it.
        connect_timeout_ms=(
            settings.CONNECT_TIMEOUT_MS if bind_key is not None else None
        ),
    )
    return writer, release
