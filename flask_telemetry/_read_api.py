"""The read API over one application's telemetry bind.

:meta private: :class:`flask_telemetry.Telemetry` exposes these methods; the
``flask telemetry`` commands call them on the application's state.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from . import reading
from .reading import rollups

if t.TYPE_CHECKING:
    import sqlalchemy as sa

    from ._config import Settings
    from .storage.vocabulary import ActorType, EventType, Severity


class Readable(t.Protocol):
    """What the read API needs of an application's telemetry."""

    @property
    def settings(self) -> Settings: ...

    @property
    def model(self) -> type[t.Any]: ...

    @property
    def rollup_model(self) -> type[t.Any] | None: ...

    @property
    def engine(self) -> t.Callable[[], sa.Engine]: ...


class ReadApi:
    """``events``, ``request_summary``, ``event_counts``, ``rollup`` and
    ``prune`` on the telemetry bind of :meth:`_readable`."""

    def _readable(self) -> Readable:
        raise NotImplementedError

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
        source = self._readable()
        return reading.events(
            source.engine(),
            source.model.__table__,
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
        :func:`flask_telemetry.reading.request_summary`."""
        source = self._readable()
        engine, table = source.engine(), source.model.__table__
        if source.rollup_model is not None:
            return rollups.summary(
                engine,
                table,
                source.rollup_model.__table__,
                since=since,
                until=until,
                route=route,
                release=release,
                retention=retention(source.settings),
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
        safe to run in several processes at once.

        Returns what it did: ``since`` and ``until``, the window folded
        (aware UTC; None when there was nothing to fold), ``rows``, the raw
        request ends read, ``buckets``, the rollup rows written, ``aged``,
        those deleted by aging, and ``seconds``; ``as_dict()`` gives them
        JSON-ready."""
        source = self._readable()
        return rollups.rollup(
            source.engine(),
            source.model.__table__,
            required_rollups(source).__table__,
            since=since,
            grace=dt.timedelta(seconds=source.settings.ROLLUP_GRACE_S),
            retention=retention(source.settings),
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
        source = self._readable()
        return reading.event_counts(
            source.engine(),
            source.model.__table__,
            since=since,
            until=until,
            route=route,
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
        source = self._readable()
        days = (
            source.settings.RETENTION_DAYS
            if older_than_days is None
            else older_than_days
        )
        if isinstance(days, bool) or not isinstance(days, (int, float)) or days < 0:
            raise ValueError(f"older_than_days must be a number >= 0, not {days!r}.")
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        if source.rollup_model is not None and not dry_run:
            # What is about to be deleted is folded first: the rollups keep
            # its figures past the raw retention.
            self.rollup()
        return reading.prune(
            source.engine(),
            source.model.__table__,
            cutoff=cutoff,
            batch_size=batch_size,
            max_seconds=max_seconds,
            dry_run=dry_run,
        )


def required_rollups(source: Readable) -> type[t.Any]:
    """The model of ``telemetry_rollups``; a RuntimeError when rollups are off."""
    model = source.rollup_model
    if model is None:
        raise RuntimeError(
            "Rollups are off: set TELEMETRY_ROLLUPS = True (then run "
            "`flask db migrate` and `flask db upgrade`)."
        )
    return model


def retention(settings: Settings) -> rollups.Retention:
    """How long the rollups keep each bucket size."""
    minutes, hours, days = settings.ROLLUP_RETENTION_DAYS
    return rollups.Retention(minutes=minutes, hours=hours, days=days)
