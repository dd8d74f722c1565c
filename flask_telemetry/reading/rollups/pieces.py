"""How a window is read: which parts come from the stored buckets of which
level, and which from the raw rows.

:func:`plan` cuts a window into pieces: the fewest buckets of the levels
still kept for the folded part, raw rows for the seconds at its edges and
for what is not folded yet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

from .buckets import DAY, HOUR, LEVELS, MINUTE, Retention, ceil, floor


@dataclasses.dataclass(frozen=True, slots=True)
class Piece:
    """Part of a window: raw rows (``level`` None) or buckets of ``level``."""

    level: int | None
    since: dt.datetime
    until: dt.datetime


_TICK = dt.timedelta(microseconds=1)


def plan(
    since: dt.datetime,
    until: dt.datetime,
    *,
    folded: dt.datetime | None,
    oldest_raw: dt.datetime | None,
    now: dt.datetime,
    retention: Retention,
) -> list[Piece]:
    """How to read ``[since, until)``: the fewest buckets of the levels kept
    for each part, raw rows for the seconds at the edges and for what is not
    folded yet. Where the raw rows are gone and the finer buckets too, an
    edge widens to the bucket that holds it (the only inexact case)."""
    pieces: list[Piece] = []
    end = until if folded is None else min(until, folded)
    if folded is None or end <= since:
        return [Piece(None, since, until)]

    def kept(level: int, when: dt.datetime) -> bool:
        return when >= now - retention.of(level)

    def raw(when: dt.datetime) -> bool:
        return oldest_raw is not None and when >= oldest_raw

    # The edges: raw rows where they exist, else the edge widens outwards
    # to the finest level kept there.
    start = since
    level = MINUTE
    if not raw(since):
        for level in LEVELS:
            if kept(level, since) or level == DAY:
                break
        start = floor(since, level)
    lead = ceil(start, MINUTE)
    if start < lead and raw(start):
        pieces.append(Piece(None, start, min(lead, end)))
    stop = floor(end, MINUTE)
    if stop < end and not raw(stop):
        stop = ceil(end, MINUTE)  # no raw rows there: the whole minute
    pieces += _cover(lead, stop, kept, raw)
    if stop < end and stop >= lead:
        pieces.append(Piece(None, stop, end))
    if end < until:
        pieces.append(Piece(None, end, until))
    return [p for p in pieces if p.since < p.until]


def _cover(
    start: dt.datetime,
    end: dt.datetime,
    kept: t.Callable[[int, dt.datetime], bool],
    raw: t.Callable[[dt.datetime], bool],
) -> list[Piece]:
    """Pieces covering ``[start, end)`` (minute-aligned): at each step the
    coarsest bucket that starts there, fits and is kept. Where none fits
    (the finer buckets aged), raw rows up to the next bucket that does, or,
    with the raw rows gone too, the kept bucket holding that part."""
    steps: list[Piece] = []
    at = start
    while at < end:
        for level in (DAY, HOUR, MINUTE):
            size = dt.timedelta(seconds=level)
            if floor(at, level) == at and at + size <= end and kept(level, at):
                steps.append(Piece(level, at, at + size))
                break
        else:
            level = next((lv for lv in LEVELS if kept(lv, at)), DAY)
            if raw(at):
                steps.append(Piece(None, at, min(ceil(at + _TICK, level), end)))
            else:
                first = floor(at, level)
                steps.append(Piece(level, first, first + dt.timedelta(seconds=level)))
        at = steps[-1].until
    # Runs of one level read as one range.
    pieces: list[Piece] = []
    for step in steps:
        last = pieces[-1] if pieces else None
        if last is not None and last.level == step.level and last.until == step.since:
            pieces[-1] = Piece(step.level, last.since, step.until)
        else:
            pieces.append(step)
    return pieces
