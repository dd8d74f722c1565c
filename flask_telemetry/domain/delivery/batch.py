"""Storing a batch: validation, one INSERT, and isolation of bad rows."""

from __future__ import annotations

import dataclasses
import typing as t

from ...storage.row import TraceEvent, Values
from ...storage.writer import StorageFailure, TraceWriter
from ..log import RateLimitedLog, driver_noise_muted
from .stats import Stats

Row = dict[str, t.Any]


@dataclasses.dataclass(slots=True)
class Outcome:
    """What became of a batch, counted by the caller once it is final."""

    #: Rows per successful INSERT (one entry per statement).
    writes: list[int] = dataclasses.field(default_factory=list)
    #: Events not stored, by drop reason.
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        """Note ``count`` events not stored for ``reason``."""
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    @property
    def written(self) -> int:
        """Rows stored, over every INSERT of the batch."""
        return sum(self.writes)


class DatabaseDown(Exception):
    """The database failed (not a row): ``remaining`` rows were not stored."""

    def __init__(self, failure: StorageFailure, remaining: list[Row]) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.remaining = remaining


class BatchStore:
    """Validates a batch, inserts the valid rows, and keeps the counters exact.

    A batch the database rejects because of a row's content is split in
    halves until the bad rows are found, so one bad row never costs the good
    ones. A failure of the database itself raises :class:`DatabaseDown` with
    the rows not yet stored, so that a retry never inserts a row twice.

    Nothing here touches the counters: the caller adds an :class:`Outcome`
    with :meth:`count` once it is final (the background writer may have to
    give a batch up at shutdown while its INSERT is still running).
    """

    def __init__(
        self,
        writer: TraceWriter,
        stats: Stats,
        log: RateLimitedLog,
        *,
        release: t.Callable[[], None] = lambda: None,
    ) -> None:
        self.writer = writer
        self.stats = stats
        self.log = log
        #: Closes what the writer holds (its own pool) once delivery stops.
        self.release = release

    def validate(
        self, events: t.Sequence[TraceEvent | Values], outcome: Outcome
    ) -> list[Row]:
        """Return the rows to insert; the rejected events go to ``outcome``."""
        rows, rejected = self.writer.validate(events)
        if rejected:
            outcome.drop("invalid", len(rejected))
            event, why = rejected[0]
            self.log.error(
                "invalid",
                "Dropped %d invalid telemetry event(s), first %s: %s",
                len(rejected),
                event.event_type,
                why,
            )
        return rows

    def insert(self, rows: list[Row], outcome: Outcome) -> None:
        """Insert rows, isolating bad ones; raise DatabaseDown for the rest."""
        pending = [rows] if rows else []
        while pending:
            part = pending.pop()
            try:
                with driver_noise_muted():
                    self.writer.insert(part)
            except StorageFailure as exc:
                if not exc.per_row:
                    remaining = [row for chunk in pending for row in chunk]
                    raise DatabaseDown(exc, part + remaining) from exc
                if len(part) == 1:
                    outcome.drop("storage_error")
                    self.log.error(
                        "row", "The database rejected a telemetry row: %s", exc
                    )
                    continue
                half = len(part) // 2
                pending.append(part[half:])
                pending.append(part[:half])
                continue
            outcome.writes.append(len(part))

    def after_fork(self) -> None:
        """In a child process: counters from zero, a fresh pool for the writer."""
        self.stats.reset()
        self.writer.after_fork()

    def count(self, outcome: Outcome) -> None:
        """Add a final outcome to the counters."""
        for size in outcome.writes:
            self.stats.wrote(size)
        for reason, count in outcome.dropped.items():
            self.stats.drop(reason, count)
