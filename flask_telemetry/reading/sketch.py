"""Mergeable latency histograms with bounded relative error (DDSketch's mapping).

A duration ``d > 0`` falls in bin ``ceil(ln(d) / ln(GAMMA))``: bin ``k``
holds ``(GAMMA**(k-1), GAMMA**k]``, and :func:`value` of a bin, ``2 *
GAMMA**k / (GAMMA + 1)``, is within :data:`RELATIVE_ACCURACY` of every
duration in it (Masson, Rim and Lee, "DDSketch", VLDB 2019). A duration of 0
has a bin of its own, :data:`ZERO`. Histograms are ``{bin: weight}`` dicts;
merging two is adding their weights, so a histogram of any window is the
sum of those of its buckets, and the same figures come out whatever the
order of folding.

The bin is computed by the database (:func:`sql_bin`) and the value here:
the ``ddsketch`` package has the same mapping in Python only, and the two
sides must agree on the formula, so it is written out in both places.

:func:`quantiles` places a percentile between the two closest ranks as
``percentile_cont`` does (linear interpolation), each rank's value read from
its bin: since every bin's value is within the accuracy of the durations it
holds, and an interpolation of values each within it is within it too, the
result is within :data:`RELATIVE_ACCURACY` of the exact percentile.
"""

from __future__ import annotations

import math
import typing as t

import sqlalchemy as sa

#: The largest relative error of a value read from a bin: 1% promised, a
#: margin kept for the rounding of ``ln`` in the databases.
RELATIVE_ACCURACY = 0.009
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_MULTIPLIER = 1 / math.log(GAMMA)
#: The bin of a duration of 0.
ZERO = "z"

Histogram: t.TypeAlias = dict[str, float]


def bin_of(duration: float) -> str:
    """The bin of ``duration`` (ms, >= 0), as the database computes it."""
    if duration <= 0:
        return ZERO
    return str(math.ceil(math.log(duration) * _MULTIPLIER))


def value(key: str) -> float:
    """The value that stands for the durations of bin ``key``."""
    if key == ZERO:
        return 0.0
    return 2 * GAMMA ** int(key) / (GAMMA + 1)


def sql_bin(duration: sa.ColumnElement[t.Any]) -> sa.ColumnElement[t.Any]:
    """The bin of ``duration`` in SQL: an integer, NULL for 0.

    ``ceil`` written as ``-floor(-x)``, which every database has.
    """
    scaled = sa.func.ln(duration) * sa.literal(_MULTIPLIER)
    return sa.case((duration > 0, -sa.func.floor(-scaled)))


def key_of(sql_value: t.Any) -> str:
    """The histogram key of a bin read back from :func:`sql_bin`."""
    return ZERO if sql_value is None else str(int(sql_value))


def merge(into: Histogram, other: t.Mapping[str, float]) -> Histogram:
    """Add ``other``'s weights to ``into`` (returned)."""
    for key, weight in other.items():
        into[key] = into.get(key, 0.0) + float(weight)
    return into


def _ordered(histogram: t.Mapping[str, float]) -> list[tuple[float, float]]:
    pairs = [(value(k), float(w)) for k, w in histogram.items() if w > 0]
    pairs.sort()
    return pairs


def quantiles(
    histogram: t.Mapping[str, float], fractions: t.Sequence[float]
) -> list[float | None]:
    """The ``fractions`` (0 to 1) of the durations in ``histogram``.

    With weights of whole numbers (rows never sampled) the rank of fraction
    ``p`` among ``n`` durations is ``p * (n - 1)``, as for
    ``percentile_cont``; sampled rows' weights place it the same way over
    the total weight. None for an empty histogram.
    """
    pairs = _ordered(histogram)
    total = sum(w for _, w in pairs)
    if total <= 0:
        return [None] * len(fractions)
    found: list[float | None] = []
    for fraction in fractions:
        rank = fraction * max(total - 1.0, 0.0)
        low, high = math.floor(rank), math.ceil(rank)
        below = _at(pairs, low)
        above = below if high == low else _at(pairs, high)
        found.append(below + (above - below) * (rank - low))
    return found


def _at(pairs: list[tuple[float, float]], rank: float) -> float:
    """The value of the duration at 0-based ``rank`` in order."""
    seen = 0.0
    for bin_value, weight in pairs:
        seen += weight
        if rank < seen:
            return bin_value
    return pairs[-1][0]


__all__ = [
    "GAMMA",
    "RELATIVE_ACCURACY",
    "ZERO",
    "Histogram",
    "bin_of",
    "key_of",
    "merge",
    "quantiles",
    "sql_bin",
    "value",
]
