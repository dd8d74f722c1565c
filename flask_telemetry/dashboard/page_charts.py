"""The pages' charts of the read API's figures: traffic over time, and a
route's requests by duration and by status."""

from __future__ import annotations

import typing as t

from markupsafe import Markup

from ..reading import series
from . import charts


def traffic(buckets: list[series.Bucket], *, rollups: bool = False) -> list[Markup]:
    """Requests per minute, the error rate and the latency percentiles.

    ``rollups``: the buckets were read from the rollups, whose percentiles
    are within 1% (the raw rows' log bins: within about 2.5%)."""
    accuracy = "within 1%" if rollups else "within about 2.5%"
    times = [b.start for b in buckets]
    return [
        charts.line_chart(
            times,
            [
                charts.Line(
                    label="requests", css="s1", values=[b.per_minute for b in buckets]
                )
            ],
            title="Requests per minute",
            unit="req/min",
        ),
        charts.line_chart(
            times,
            [
                charts.Line(
                    label="errors",
                    css="s3",
                    values=[
                        b.error_rate * 100 if b.requests else None for b in buckets
                    ],
                )
            ],
            title="Error rate (status ≥ 500 or an exception)",
            unit="%",
        ),
        charts.line_chart(
            times,
            [
                charts.Line(label="p50", css="s1", values=[b.p50_ms for b in buckets]),
                charts.Line(label="p95", css="s2", values=[b.p95_ms for b in buckets]),
                charts.Line(label="p99", css="s3", values=[b.p99_ms for b in buckets]),
            ],
            title=f"Latency percentiles (log scale, {accuracy})",
            unit="ms",
            log=True,
        ),
    ]


def durations(histogram: t.Sequence[t.Any]) -> Markup | None:
    """Requests by duration, one bar per log bin; None without requests."""
    bars = [
        charts.Bar(
            label=_ms(b.low_ms),
            value=b.requests,
            hint=f"{_ms(b.low_ms)}-{_ms(b.high_ms)} ms: {b.requests}",
        )
        for b in histogram
    ]
    return _requests_by(
        "duration", bars, "duration in ms (log bins: from each label to the next)"
    )


def statuses(counted: t.Sequence[t.Any]) -> Markup | None:
    """Requests by HTTP status, in the order of the statuses; None without
    requests."""
    bars = [
        charts.Bar(
            label=str(s.status), value=s.requests, css=f"bar status{s.status // 100}"
        )
        for s in sorted(counted, key=lambda s: s.status)
    ]
    return _requests_by("status", bars, "HTTP status")


def _requests_by(what: str, bars: list[charts.Bar], x_unit: str) -> Markup | None:
    """A bar chart of requests by ``what``; None without a bar."""
    if not bars:
        return None
    return charts.bar_chart(
        bars, title=f"Requests by {what}", unit="requests", x_unit=x_unit, integer=True
    )


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"
