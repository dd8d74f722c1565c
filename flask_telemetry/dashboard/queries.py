"""How a page reads: its queries at the same time within the page's budget,
from every row of the window, a sample of it, or the rollups."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import time
import typing as t

import sqlalchemy as sa

from ..reading import Sample, rollups
from ..reading import sample as sampling
from . import budget, params

if t.TYPE_CHECKING:
    from .._wiring import AppState

#: Queries of one page run at the same time, each on its own connection.
CONCURRENT_QUERIES = 5
_SHARED_POOLS = (sa.pool.StaticPool, sa.pool.SingletonThreadPool)

#: A query of a page: its result, read on the connection it is given.
Call = t.Callable[[sa.Connection], t.Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """One application's telemetry as its pages read it."""

    telemetry: AppState

    def table(self) -> sa.Table:
        """``telemetry_traces``."""
        table: sa.Table = self.telemetry.model.__table__
        return table

    def rollups(self) -> Rollups | None:
        """The rollups to read the figures and charts from, when they are on."""
        model = self.telemetry.rollup_model
        if model is None:
            return None
        minutes, hours, days = self.telemetry.settings.ROLLUP_RETENTION_DAYS
        return Rollups(
            model.__table__,
            rollups.Retention(minutes=minutes, hours=hours, days=days),
        )

    def run(self, **calls: Call) -> dict[str, t.Any]:
        """Each call's result, each run on a connection of its own; the calls
        of one request share :data:`.budget.PAGE_SECONDS`.

        The queries of a page run at the same time, up to
        :data:`CONCURRENT_QUERIES` at once, so that a page takes about as long
        as its slowest query. Not on an engine whose pool shares one
        connection (an in-memory SQLite database): there one after the other.
        """
        engine = self.telemetry.engine()
        deadline = budget.deadline()

        def run(call: Call) -> t.Any:
            with (
                engine.connect() as conn,
                budget.limited(conn, deadline - time.monotonic()),
            ):
                return call(conn)

        if len(calls) == 1 or isinstance(engine.pool, _SHARED_POOLS):
            return {key: run(call) for key, call in calls.items()}
        workers = min(len(calls), CONCURRENT_QUERIES)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {key: pool.submit(run, call) for key, call in calls.items()}
            return {key: future.result() for key, future in futures.items()}

    def samples(
        self,
        since: dt.datetime,
        until: dt.datetime,
        counts: t.Mapping[str, t.Callable[[sa.Connection, Sample], float]],
        *,
        target: int,
    ) -> dict[str, Sample | None]:
        """For each of ``counts`` (rows of the window, estimated through the
        sample it is given), the :class:`Sample` of about ``target`` rows to
        read instead of the window, or None to read every row; None for all
        with ``exact=1``."""
        if exact():
            return dict.fromkeys(counts)
        probe = sampling.probe(since, until)
        rows = self.run(
            **{
                key: lambda c, count=count: count(c, probe)
                for key, count in counts.items()
            }
        )
        return {
            key: Sample.of(since, until, rows=found, target=target)
            for key, found in rows.items()
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Rollups:
    """``telemetry_rollups`` and how long its buckets are kept."""

    table: sa.Table
    retention: rollups.Retention

    def calls(self, traces: sa.Table, **window: t.Any) -> dict[str, Call]:
        """The page's ``summary`` and ``buckets`` read from the rollups."""
        bounds = {
            "since": window["since"],
            "until": window["until"],
            "route": window.get("route"),
            "unmatched": window.get("unmatched", False),
            "retention": self.retention,
        }
        return {
            "summary": lambda c: rollups.summary(c, traces, self.table, **bounds),
            "buckets": lambda c: rollups.traffic(c, traces, self.table, **bounds),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    """How a page's figures were read: ``percent`` % of the window's time,
    in ``slices`` slices, counting ``noun``."""

    percent: float
    slices: int
    noun: str


def estimate(sample: Sample | None, noun: str) -> Estimate | None:
    """What a page says of figures read through ``sample``; None for every row."""
    if sample is None:
        return None
    return Estimate(sample.fraction * 100, sampling.SLICES, noun)


def exact() -> bool:
    """Whether the page was asked for figures from every row (``exact=1``)."""
    return params.current().get("exact") == "1"
