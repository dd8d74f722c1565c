"""Storing a batch: validation, one INSERT, and isolation of bad rows."""

from __future__ import annotations

import typing as t

from ..storage import StorageFailure, TraceEvent, TraceWriter
from .log import RateLimitedLog
from .stats import Stats


class BatchStore:
    """Validates a batch, inserts the valid rows, and keeps the counters exact.

    A batch the database rejects because of a row's content is split in
    halves until the bad rows are found, so one bad row never costs the good
    ones. A failure of the database itself is raised for the caller to retry.
    """

    def __init__(self, writer: TraceWriter, stats: Stats, log: RateLimitedLog) -> None:
        self.writer = writer
        self.stats = stats
        self.log = log

    def validate(self, events: t.Sequence[TraceEvent]) -> list[dict[str, t.Any]]:
        """Return the rows to insert; count and log the rejected events."""
        rows, rejected = self.writer.validate(events)
        if rejected:
            self.stats.drop("invalid", len(rejected))
            event, why = rejected[0]
            self.log.error(
                "invalid",
                "Dropped %d invalid telemetry event(s), first %s: %s",
                len(rejected),
                event.event_type,
                why,
            )
        return rows

    def insert(self, rows: list[dict[str, t.Any]]) -> None:
        """Insert rows; raise StorageFailure only for a failure of the database."""
        try:
            self.writer.insert(rows)
        except StorageFailure as exc:
            if not exc.per_row:
                raise
            if len(rows) == 1:
                self.stats.drop("storage_error")
                self.log.error("row", "The database rejected a telemetry row: %s", exc)
                return
            half = len(rows) // 2
            self.insert(rows[:half])
            self.insert(rows[half:])
            return
        self.stats.wrote(len(rows))
