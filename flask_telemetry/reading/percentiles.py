"""Weighted percentiles by linear interpolation, computed on a sorted stream.

The definition (the one the database's ``percentile_cont`` uses, extended to
weights): sort the values ``x_1 <= ... <= x_n``, each with a weight
``w_k >= 1`` (``1/sample_rate`` for a sampled request, 1 otherwise), and let
``S_k = w_1 + ... + w_k`` and ``W = S_n``. Value ``x_k`` covers the positions
``S_{k-1}`` to ``S_k - 1`` (0-based), as if the request it stands for had
been stored ``w_k`` times; between two values the position runs linearly
from one to the next. The percentile ``p`` is the value at position
``h = p * (W - 1)``:

- ``x_k`` when ``S_{k-1} <= h <= S_k - 1``;
- ``x_{k-1} + (h - (S_{k-1} - 1)) * (x_k - x_{k-1})`` when
  ``S_{k-1} - 1 < h < S_{k-1}``.

With every weight 1 this is exactly the linear method (numpy's default,
PostgreSQL's ``percentile_cont``): ``h = p * (n - 1)`` and the value is
interpolated between the closest ranks. With whole-number weights it is the
linear method applied to the values repeated ``w_k`` times.
"""

from __future__ import annotations

import math
import typing as t


def weighted_percentiles(
    rows: t.Iterable[tuple[float, float]],
    total_weight: float,
    fractions: t.Sequence[float],
) -> list[float]:
    """Percentiles of ``rows`` (``(value, weight)`` sorted by value).

    ``total_weight`` is the sum of the weights, known beforehand so that the
    rows are read once, in order, and never kept. ``fractions`` ascend.
    Raises ValueError when there are no rows.
    """
    walk = Walk(total_weight, fractions)
    for value, weight in rows:
        if walk.add(value, weight):
            break  # the rows above the last percentile are not read
    return walk.result()


class Walk:
    """The percentiles of sorted values fed one at a time (see the module)."""

    __slots__ = ("_found", "_next", "_position", "_previous", "_targets", "_value")

    def __init__(self, total_weight: float, fractions: t.Sequence[float]) -> None:
        self._targets = [p * (total_weight - 1.0) for p in fractions]
        self._found: list[float] = []
        self._next = self._targets[0] if self._targets else math.inf
        self._position = 0.0  # S_{k-1}
        self._previous: float | None = None
        self._value = 0.0

    def add(self, value: float, weight: float) -> bool:
        """Feed the next value; True once every percentile is known."""
        if weight < 1.0:
            weight = 1.0
        start = self._position
        end = start + weight - 1.0
        if end >= self._next:  # this value reaches the next percentile
            self._place(value, start, end)
        self._position = start + weight
        self._previous = self._value = value
        return self._next == math.inf

    def _place(self, value: float, start: float, end: float) -> None:
        targets = self._targets
        found = self._found
        previous = self._previous
        while len(found) < len(targets):
            target = targets[len(found)]
            if target > end:
                break
            if target >= start or previous is None:
                found.append(value)
            else:
                found.append(previous + (value - previous) * (target - (start - 1.0)))
        self._next = targets[len(found)] if len(found) < len(targets) else math.inf

    def result(self) -> list[float]:
        """The percentiles; ValueError when no value was fed."""
        if self._previous is None:
            raise ValueError("No rows to take percentiles of.")
        # Targets a rounding error put past the end: the largest value.
        missing = len(self._targets) - len(self._found)
        return self._found + [self._value] * missing
