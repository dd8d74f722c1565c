"""Rollups: request ends folded into per-bucket figures, exact at any scale.

Opt-in (``TELEMETRY_ROLLUPS = True``). :func:`rollup` folds the raw
``http_request_end`` rows of closed minutes into ``telemetry_rollups``: one
row per bucket, route and release with exact counts and sums and a
mergeable latency histogram (:mod:`..sketch`). Buckets are minutes, hours
and days: each level is recomputed whole from the finer one, and aged by
its own retention (minutes for 2 days, hours for 35, days for 400 by
default), so the figures of any window come from a few hundred rows
instead of every request.

Reading (:func:`summary`, :func:`traffic`): the part of a window up to the
last folded minute comes from the rollups, the rest (and the seconds at its
edges) from the raw rows; counts are exact, percentiles within 1%.

The modules, one subject each:

- :mod:`.buckets`: the levels and their retention, bucket starts, and the
  figures a bucket holds;
- :mod:`.raw`: the raw request ends grouped into buckets;
- :mod:`.stored`: the stored buckets read back, and the fold mark;
- :mod:`.fold`: folding and aging (:func:`rollup`);
- :mod:`.pieces`: which parts of a window come from which level (:func:`plan`);
- :mod:`.windows`: the figures of a window (:func:`summary`, :func:`traffic`).
"""

from __future__ import annotations

from .buckets import DAY, HOUR, LEVELS, MINUTE, Retention
from .fold import RollupResult, rollup
from .pieces import plan
from .stored import folded_until
from .windows import MAX_BUCKETS, summary, traffic

__all__ = [
    "DAY",
    "HOUR",
    "LEVELS",
    "MAX_BUCKETS",
    "MINUTE",
    "Retention",
    "RollupResult",
    "folded_until",
    "plan",
    "rollup",
    "summary",
    "traffic",
]
