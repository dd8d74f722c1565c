"""Reading a fixed fraction of a large window: short time slices spread over it.

Every aggregate of ``http_request_end`` reads its row's JSON metadata, and
parsing it is the cost of a query (about 3 µs a row on SQLite): over a
million rows a figure takes seconds whatever the index. A :class:`Sample`
keeps a query to about the same number of rows however large the window.
It is :data:`SLICES` short slices of time, one in each equal part of the
window, each ``fraction`` of its part long and placed at an offset that
moves from part to part (a Weyl sequence, so that no clock pattern such as
an hourly job lines up with them). The slices are ranges of ``occurred_at``:
an index reads the rows inside them and nothing else, so a query costs what
its sample costs on every database (a filter on the rows' ids would still
walk the whole window's index entries, about 0.5 s per million on MariaDB).

Each row read stands for ``1 / fraction`` rows: counts are scaled by it;
means and percentiles are the sample's (estimates); the maximum is the
sample's, at most the window's. A burst shorter than a part of the window
(7 days / 400 = 25 minutes) may fall between slices.

:func:`probe` is a sample of :data:`PROBE_FRACTION` of the window, to count
the rows of a window cheaply and choose the fraction with :meth:`Sample.of`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

import sqlalchemy as sa

from . import _dialects, _window

#: Slices of a sample: one per 1/SLICES of the window.
SLICES = 120
#: The fraction of the window a probe reads to estimate its rows.
PROBE_FRACTION = 1 / 32
#: The offset of slice i in its part is frac(i * _STEP) of the free room.
_STEP = 0.6180339887498949


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """``fraction`` of the window ``[since, until)``, in :data:`SLICES` slices."""

    since: dt.datetime
    until: dt.datetime
    fraction: float

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(
                f"fraction must be between 0 and 1 (excluded), not {self.fraction!r}."
            )
        if not self.since < self.until:
            raise ValueError("A sample's window must end after it starts.")

    @classmethod
    def of(
        cls, since: dt.datetime, until: dt.datetime, *, rows: float, target: int
    ) -> Sample | None:
        """The sample that reads about ``target`` of a window of ``rows``
        rows; None (every row) when that is more than half of them."""
        if target < 1:
            raise ValueError(f"target must be at least 1, not {target!r}.")
        if rows <= 2 * target or since >= until:
            return None
        return cls(since, until, target / rows)

    @property
    def scale(self) -> float:
        """How many rows each row read stands for."""
        return 1.0 / self.fraction

    def slices(self) -> list[tuple[dt.datetime, dt.datetime]]:
        """The ``[start, end)`` ranges of ``occurred_at`` the sample reads."""
        part = (self.until - self.since) / SLICES
        length = part * self.fraction
        found = []
        for index in range(SLICES):
            offset = (index * _STEP) % 1.0
            start = self.since + part * index + (part - length) * offset
            found.append((start, start + length))
        return found

    def clause(self, dialect: sa.Dialect, table: sa.Table) -> sa.ColumnElement[bool]:
        """The filter that keeps the rows of ``table`` inside the slices.

        PostgreSQL and MySQL/MariaDB: the OR of the ranges, which their
        planners read as one index range per slice (a bitmap OR, a range
        access). Joined to a table of the slices, both scanned far more.
        SQLite: that join, on a small table of the slices (a CTE), which its
        planner reads as one index range per slice; given the OR, it may
        scan the whole window, or another index.
        """
        column = table.c.occurred_at
        ranges = [
            (_dialects.bind_time(dialect, start), _dialects.bind_time(dialect, end))
            for start, end in self.slices()
        ]
        if _dialects.is_mysql(dialect):
            return _tree(column, ranges)
        if dialect.name != "sqlite":
            return sa.or_(
                *(sa.and_(column >= start, column < end) for start, end in ranges)
            )
        kind = column.type
        slices = sa.union_all(
            *(
                sa.select(
                    sa.literal(start, kind).label("start"),
                    sa.literal(end, kind).label("end"),
                )
                for start, end in ranges
            )
        ).cte("telemetry_sample")
        return sa.and_(column >= slices.c.start, column < slices.c.end)


def _tree(
    column: sa.ColumnElement[t.Any], ranges: list[tuple[dt.datetime, dt.datetime]]
) -> sa.ColumnElement[bool]:
    """The ranges (in time order) as a balanced tree of comparisons.

    MySQL/MariaDB read the ranges from it as from a flat OR, then test each
    row against the whole condition again: a flat OR of n slices costs n/2
    tests a row, the tree about log2(n).
    """
    if len(ranges) == 1:
        [(start, end)] = ranges
        return sa.and_(column >= start, column < end)
    half = len(ranges) // 2
    middle = ranges[half][0]
    return sa.or_(
        sa.and_(column < middle, _tree(column, ranges[:half])),
        sa.and_(column >= middle, _tree(column, ranges[half:])),
    )


def probe(since: dt.datetime, until: dt.datetime) -> Sample:
    """The sample of :data:`PROBE_FRACTION` of the window, to count its rows
    (multiply the rows it reads by :attr:`Sample.scale`)."""
    return Sample(since, until, PROBE_FRACTION)


def time_filters(
    dialect: sa.Dialect,
    table: sa.Table,
    since: _window.TimeBound | None,
    until: _window.TimeBound | None,
    sample: Sample | None,
) -> list[sa.ColumnElement[bool]]:
    """``since <= occurred_at < until``, or only the sample's slices when
    they lie inside that window.

    The window's own bounds are left out then: beside them, SQLite may read
    the whole window once per slice instead of each slice's rows.
    """
    if sample is None:
        return _window.time_filters(dialect, table, since, until)
    now = dt.datetime.now(dt.UTC)
    start, end = _window.resolve(since, now), _window.resolve(until, now)
    clauses = [sample.clause(dialect, table)]
    if (start is None or start <= sample.since) and (
        end is None or sample.until <= end
    ):
        return clauses
    return clauses + _window.time_filters(dialect, table, since, until)


def scale(sample: Sample | None) -> float:
    """How many rows each row read stands for (1 without a sample)."""
    return 1.0 if sample is None else sample.scale


__all__ = ["PROBE_FRACTION", "SLICES", "Sample", "probe", "scale", "time_filters"]
