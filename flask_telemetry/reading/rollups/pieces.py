"""How a window is read: which parts come from the stored buckets of which
level, and which from the raw rows.

:func:`plan` cuts a window into pieces: the fewest buckets of the levels
still kept for the folded part, raw rows for the seconds at its edges and
for what is not folded yet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from .buckets import DAY, HOUR, MINUTE, Retention, ceil, floor


@dataclasses.dataclass(frozen=True, slots=True)
class Piece:
    """Part of a window: raw rows (``level`` None) or buckets of ``level``."""

    level: int | None
    since: dt.datetime
    until: dt.datetime


_TICK = dt.timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True, slots=True)
class _Kept:
    """What is still stored at a time: the buckets of each level, for as long
    as its retention, and the raw rows, from the oldest on."""

    oldest_raw: dt.datetime | None
    now: dt.datetime
    retention: Retention

    def bucket(self, level: int, when: dt.datetime) -> bool:
        """Whether the buckets of ``level`` at ``when`` are kept."""
        return self.retention.keeps(level, when, self.now)

    def raw(self, when: dt.datetime) -> bool:
        """Whether the raw rows at ``when`` are kept."""
        return self.oldest_raw is not None and when >= self.oldest_raw

    def finest(self, when: dt.datetime) -> int:
        """The finest level whose buckets at ``when`` are kept (days, when no
        level's are)."""
        return self.retention.finest(when, self.now)


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
    end = until if folded is None else min(until, folded)
    if folded is None or end <= since:
        return [Piece(None, since, until)]
    kept = _Kept(oldest_raw, now, retention)
    start, stop = _edges(since, end, kept)
    lead = ceil(start, MINUTE)
    pieces: list[Piece] = []
    if start < lead and kept.raw(start):
        pieces.append(Piece(None, start, min(lead, end)))
    pieces += _cover(lead, stop, kept)
    if stop < end and stop >= lead:
        pieces.append(Piece(None, stop, end))
    if end < until:
        pieces.append(Piece(None, end, until))
    return [p for p in pieces if p.since < p.until]


def _edges(
    since: dt.datetime, end: dt.datetime, kept: _Kept
) -> tuple[dt.datetime, dt.datetime]:
    """Where the read of the folded part ``[since, end)`` starts, and where
    its buckets stop (the seconds from there to ``end`` are raw rows). Each
    edge stays where the raw rows are kept; else the start widens outwards
    to the finest level kept there, and the end to its whole minute."""
    start = since if kept.raw(since) else floor(since, kept.finest(since))
    stop = floor(end, MINUTE)
    if stop < end and not kept.raw(stop):
        stop = ceil(end, MINUTE)  # no raw rows there: the whole minute
    return start, stop


def _cover(start: dt.datetime, end: dt.datetime, kept: _Kept) -> list[Piece]:
    """Pieces covering ``[start, end)`` (minute-aligned), a step at a time
    (:func:`_step`), runs of one level read as one range."""
    steps: list[Piece] = []
    at = start
    while at < end:
        steps.append(_step(at, end, kept))
        at = steps[-1].until
    pieces: list[Piece] = []
    for step in steps:
        last = pieces[-1] if pieces else None
        if last is not None and last.level == step.level and last.until == step.since:
            pieces[-1] = Piece(step.level, last.since, step.until)
        else:
            pieces.append(step)
    return pieces


def _step(at: dt.datetime, end: dt.datetime, kept: _Kept) -> Piece:
    """The piece read from ``at``: the coarsest bucket that starts there,
    fits before ``end`` and is kept. Where none fits (the finer buckets
    aged), raw rows up to the next bucket that does, or, with the raw rows
    gone too, the kept bucket holding that part."""
    for level in (DAY, HOUR, MINUTE):
        size = dt.timedelta(seconds=level)
        if floor(at, level) == at and at + size <= end and kept.bucket(level, at):
            return Piece(level, at, at + size)
    level = kept.finest(at)
    if kept.raw(at):
        return Piece(None, at, min(ceil(at + _TICK, level), end))
    first = floor(at, level)
    return Piece(level, first, first + dt.timedelta(seconds=level))
