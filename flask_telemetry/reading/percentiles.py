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
    targets = [p * (total_weight - 1.0) for p in fractions]
    found: list[float] = []
    position = 0.0  # S_{k-1}
    previous: float | None = None
    value = 0.0
    for value, weight in rows:
        weight = max(weight, 1.0)
        start = position
        end = position + weight - 1.0
        while len(found) < len(targets):
            target = targets[len(found)]
            if target > end:
                break
            if target >= start or previous is None:
                found.append(value)
            else:
                fraction = target - (start - 1.0)
                found.append(previous + (value - previous) * fraction)
        if len(found) == len(targets):
            return found  # the rows above the last percentile are not read
        position += weight
        previous = value
    if previous is None:
        raise ValueError("No rows to take percentiles of.")
    # Targets a rounding error put past the end: the largest value.
    found.extend(value for _ in range(len(targets) - len(found)))
    return found
