"""What a rollup bucket is: its levels, how long each is kept, where a
bucket starts, and the figures one bucket holds for a route and release.

Buckets are a minute, an hour or a day long (:data:`LEVELS`); a bucket of
``width`` seconds starts at a whole multiple of ``width`` since the Unix
epoch, so that each level's buckets are made of whole buckets of the level
below. :class:`Figures` are summed the same way whether they come from the
raw rows (:mod:`.raw`) or from stored buckets (:mod:`.stored`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import typing as t

from .. import sketch

MINUTE, HOUR, DAY = 60, 3600, 86400
#: The bucket lengths, finest first.
LEVELS = (MINUTE, HOUR, DAY)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Retention:
    """How long each level of buckets is kept, in days."""

    minutes: float = 2
    hours: float = 35
    days: float = 400

    def of(self, level: int) -> dt.timedelta:
        """How long buckets of ``level`` seconds are kept."""
        days = {MINUTE: self.minutes, HOUR: self.hours, DAY: self.days}[level]
        return dt.timedelta(days=days)

    def keeps(self, level: int, when: dt.datetime, now: dt.datetime) -> bool:
        """Whether the buckets of ``level`` at ``when`` are still kept at
        ``now``."""
        return when >= now - self.of(level)

    def finest(self, when: dt.datetime, now: dt.datetime) -> int:
        """The finest level whose buckets at ``when`` are still kept at
        ``now`` (days, when no level's are)."""
        return next((lv for lv in LEVELS if self.keeps(lv, when, now)), DAY)


#: The default retention of every level.
DEFAULT_RETENTION = Retention()


@dataclasses.dataclass(slots=True)
class Figures:
    """One bucket's figures for one route and release (mutable while summed)."""

    rows: int = 0
    requests: float = 0.0
    errors: float = 0.0
    client_errors: float = 0.0
    slow: float = 0.0
    duration_sum: float = 0.0
    duration_max: float = 0.0
    unreadable: int = 0
    histogram: sketch.Histogram = dataclasses.field(default_factory=dict)
    #: The requests whose end carries database figures (weighted), their
    #: statements, their milliseconds in the database and in all, and the
    #: histogram of their database milliseconds.
    db_requests: float = 0.0
    db_count: float = 0.0
    db_ms: float = 0.0
    db_route_ms: float = 0.0
    db_histogram: sketch.Histogram = dataclasses.field(default_factory=dict)

    def add(self, other: Figures) -> None:
        """Add ``other``'s figures to these (counts summed, maxima kept)."""
        self.rows += other.rows
        self.requests += other.requests
        self.errors += other.errors
        self.client_errors += other.client_errors
        self.slow += other.slow
        self.duration_sum += other.duration_sum
        self.duration_max = max(self.duration_max, other.duration_max)
        self.unreadable += other.unreadable
        sketch.merge(self.histogram, other.histogram)
        if other.db_requests:
            self.db_requests += other.db_requests
            self.db_count += other.db_count
            self.db_ms += other.db_ms
            self.db_route_ms += other.db_route_ms
            sketch.merge(self.db_histogram, other.db_histogram)


#: (bucket start, route ("" unmatched), release ("" none)) -> figures.
Key: t.TypeAlias = tuple[dt.datetime, str, str]


def floor(when: dt.datetime, width: int) -> dt.datetime:
    """The start of the bucket of ``width`` seconds that holds ``when``."""
    seconds = (when - EPOCH).total_seconds()
    return EPOCH + dt.timedelta(seconds=math.floor(seconds / width) * width)


def ceil(when: dt.datetime, width: int) -> dt.datetime:
    """``when`` if a bucket of ``width`` seconds starts there, else the start
    of the next one."""
    start = floor(when, width)
    return start if start == when else start + dt.timedelta(seconds=width)


def merged(found: dict[Key, Figures], width: int) -> dict[Key, Figures]:
    """``found``'s buckets summed into buckets of ``width`` seconds."""
    summed: dict[Key, Figures] = {}
    for (start, route, release), figures in found.items():
        key = (floor(start, width), route, release)
        target = summed.get(key)
        if target is None:
            target = summed[key] = Figures()
        target.add(figures)
    return summed
