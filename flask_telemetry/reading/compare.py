"""Two windows (or two releases) side by side, per route, the worse first."""

from __future__ import annotations

import dataclasses
import typing as t

from ..storage.rollup_model import RELEASE_LENGTH
from .records import RouteSummary

#: A route got worse when its p95 grew by more than this share...
DEFAULT_THRESHOLD = 0.2
#: ... or its error rate by more than this many points (0.01: one point)...
ERROR_RATE_POINTS = 0.01
#: ... with at least this many requests on both sides.
DEFAULT_MIN_REQUESTS = 20


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RouteChange:
    """One route in two windows: ``current`` and ``baseline`` (either None
    when the route had no requests there), and whether it got worse."""

    route_name: str | None
    current: RouteSummary | None
    baseline: RouteSummary | None
    #: Why the route is flagged (empty when it is not).
    worse: tuple[str, ...] = ()

    def change(self, field: str) -> float | None:
        """``field``'s relative change (0.25: 25% more), None without both."""
        if self.current is None or self.baseline is None:
            return None
        before = float(getattr(self.baseline, field))
        after = float(getattr(self.current, field))
        if before == 0:
            return None if after == 0 else float("inf")
        return after / before - 1

    def as_dict(self) -> dict[str, t.Any]:
        """A JSON-ready dict: both sides' figures and their changes."""
        changes = {
            f"{field}_change": self.change(field)
            for field in ("requests", "error_rate", "p50_ms", "p95_ms", "p99_ms")
        }
        return {
            "route_name": self.route_name,
            "current": None if self.current is None else self.current.as_dict(),
            "baseline": None if self.baseline is None else self.baseline.as_dict(),
            **{k: (None if v == float("inf") else v) for k, v in changes.items()},
            "worse": list(self.worse),
        }


def compare(
    current: t.Iterable[RouteSummary],
    baseline: t.Iterable[RouteSummary],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_requests: int = DEFAULT_MIN_REQUESTS,
) -> list[RouteChange]:
    """Each route of either side, the routes that got worse first (most
    time spent first among them), then the others by time spent now.

    A route got worse when it had ``min_requests`` on both sides and its
    p95 grew by more than ``threshold`` (0.2: 20%), or its error rate by
    more than one point and by more than ``threshold`` of what it was.
    """
    now = {r.route_name: r for r in current}
    before = {r.route_name: r for r in baseline}
    found = []
    for name in now.keys() | before.keys():
        a, b = now.get(name), before.get(name)
        worse: list[str] = []
        if (
            a is not None
            and b is not None
            and min(a.requests, b.requests) >= min_requests
        ):
            if a.p95_ms > b.p95_ms * (1 + threshold):
                worse.append(f"p95 {b.p95_ms:.1f} -> {a.p95_ms:.1f} ms")
            rise = a.error_rate - b.error_rate
            if rise > ERROR_RATE_POINTS and rise > b.error_rate * threshold:
                worse.append(
                    f"errors {b.error_rate * 100:.1f}% -> {a.error_rate * 100:.1f}%"
                )
        found.append(
            RouteChange(route_name=name, current=a, baseline=b, worse=tuple(worse))
        )

    def key(change: RouteChange) -> tuple[bool, float, str]:
        side = change.current or change.baseline
        assert side is not None
        return (not change.worse, -side.total_ms, change.route_name or "")

    found.sort(key=key)
    return found


__all__ = [
    "DEFAULT_MIN_REQUESTS",
    "DEFAULT_THRESHOLD",
    "ERROR_RATE_POINTS",
    "RELEASE_LENGTH",
    "RouteChange",
    "compare",
]
