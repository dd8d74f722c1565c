"""Charts drawn on the server as inline SVG: no script, no external file.

Every text that reaches the SVG goes through :func:`markupsafe.escape`;
colours come from classes styled by the dashboard's CSS file (presentation
attributes and classes need no ``unsafe-inline`` style in the CSP).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import typing as t

from markupsafe import Markup, escape

_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 12, 26


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Line:
    """One line of a :func:`line_chart`: a value per point, None for a gap."""

    label: str
    css: str
    values: t.Sequence[float | None]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Bar:
    """One bar of a :func:`bar_chart`."""

    label: str
    value: float
    css: str = "bar"
    #: Shown on hover (an SVG <title>); the label and value when empty.
    hint: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Span:
    """One row of a :func:`timeline`: from ``start_ms`` for ``length_ms``
    (0: a point in time)."""

    label: str
    start_ms: float
    length_ms: float
    css: str = "span"
    hint: str = ""


def line_chart(
    times: t.Sequence[dt.datetime],
    lines: t.Sequence[Line],
    *,
    title: str,
    unit: str = "",
    width: int = 420,
    height: int = 170,
    log: bool = False,
) -> Markup:
    """Lines over time, with a y axis from 0 (or log-scaled) and a legend."""
    values = [v for line in lines for v in line.values if v is not None]
    top = _nice(max(values, default=0.0))
    bottom = 0.0
    if log:
        positive = [v for v in values if v > 0] or [1.0]
        bottom = _log_floor(min(positive))
        top = max(10 ** math.ceil(math.log10(max(positive))), bottom * 10)
    plot_w = width - _LEFT - _RIGHT
    plot_h = height - _TOP - _BOTTOM
    n = max(len(times), 1)

    def x(i: int) -> float:
        return _LEFT + (plot_w * (i + 0.5) / n)

    def y(v: float) -> float:
        if log:
            v = max(v, bottom)
            frac = (math.log10(v) - math.log10(bottom)) / (
                math.log10(top) - math.log10(bottom)
            )
        else:
            frac = v / top if top else 0.0
        return _TOP + plot_h * (1 - frac)

    parts = [_open(width, height, title)]
    parts.append(_axes(width, height, top, bottom, unit, log))
    if times:
        parts.append(_time_labels(times, x, height))
    for line in lines:
        for run in _runs(line.values):
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
            if len(run) == 1:
                i, v = run[0]
                parts.append(
                    f'<circle class="{escape(line.css)}" cx="{x(i):.1f}" '
                    f'cy="{y(v):.1f}" r="2"/>'
                )
            else:
                parts.append(
                    f'<polyline class="line {escape(line.css)}" points="{points}"/>'
                )
        # Hover targets: the value of each point, as text, without script.
        for i, value in enumerate(line.values):
            if value is not None:
                when = times[i].strftime("%Y-%m-%d %H:%M") if i < len(times) else ""
                parts.append(
                    f'<circle class="hover" cx="{x(i):.1f}" cy="{y(value):.1f}" r="4">'
                    f"<title>{escape(line.label)} {escape(_fmt(value))}{escape(unit)} "
                    f"at {escape(when)} UTC</title></circle>"
                )
    parts.append(_legend(lines, width))
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    bars: t.Sequence[Bar],
    *,
    title: str,
    unit: str = "",
    width: int = 420,
    height: int = 170,
) -> Markup:
    """Vertical bars with their labels below, a y axis from 0."""
    top = _nice(max((b.value for b in bars), default=0.0))
    plot_w = width - _LEFT - _RIGHT
    plot_h = height - _TOP - _BOTTOM
    n = max(len(bars), 1)
    slot = plot_w / n
    every = max(1, math.ceil(n / 12))
    parts = [_open(width, height, title), _axes(width, height, top, 0.0, unit, False)]
    for i, bar in enumerate(bars):
        h = plot_h * (bar.value / top) if top else 0.0
        x0 = _LEFT + i * slot + slot * 0.1
        hint = bar.hint or f"{bar.label}: {_fmt(bar.value)}{unit}"
        parts.append(
            f'<rect class="{escape(bar.css)}" x="{x0:.1f}" y="{_TOP + plot_h - h:.1f}" '
            f'width="{slot * 0.8:.1f}" height="{h:.1f}"><title>{escape(hint)}</title>'
            "</rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text class="tick" x="{x0 + slot * 0.4:.1f}" y="{height - 8}" '
                f'text-anchor="middle">{escape(bar.label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def timeline(spans: t.Sequence[Span], *, title: str, width: int = 900) -> Markup:
    """One row per span on a shared axis of milliseconds from the first."""
    row = 22
    label_w = 190
    height = _TOP + row * max(len(spans), 1) + _BOTTOM
    end = max((s.start_ms + s.length_ms for s in spans), default=0.0)
    top = _nice(end) or 1.0
    plot_w = width - label_w - 40

    def x(ms: float) -> float:
        return label_w + plot_w * (ms / top)

    parts = [_open(width, height, title)]
    for tick in range(5):
        ms = top * tick / 4
        parts.append(
            f'<line class="grid" x1="{x(ms):.1f}" y1="{_TOP}" x2="{x(ms):.1f}" '
            f'y2="{height - _BOTTOM}"/><text class="tick" x="{x(ms):.1f}" '
            f'y="{height - 8}" text-anchor="middle">{escape(_fmt(ms))} ms</text>'
        )
    for i, span in enumerate(spans):
        cy = _TOP + row * i + row / 2
        hint = span.hint or span.label
        parts.append(
            f'<text class="label" x="{label_w - 8}" y="{cy + 4:.1f}" '
            f'text-anchor="end">{escape(_clip(span.label, 28))}</text>'
        )
        if span.length_ms > 0:
            w = max(x(span.start_ms + span.length_ms) - x(span.start_ms), 2.0)
            parts.append(
                f'<rect class="{escape(span.css)}" x="{x(span.start_ms):.1f}" '
                f'y="{cy - 6:.1f}" width="{w:.1f}" height="12">'
                f"<title>{escape(hint)}</title></rect>"
            )
        else:
            parts.append(
                f'<circle class="{escape(span.css)}" cx="{x(span.start_ms):.1f}" '
                f'cy="{cy:.1f}" r="5"><title>{escape(hint)}</title></circle>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


# -- pieces ------------------------------------------------------------------


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )


def _axes(
    width: int, height: int, top: float, bottom: float, unit: str, log: bool
) -> str:
    plot_h = height - _TOP - _BOTTOM
    parts = []
    if log:  # one tick per power of ten
        low, high = round(math.log10(bottom)), round(math.log10(top))
        ticks = [(10.0**k, (k - low) / (high - low)) for k in range(low, high + 1)]
    else:
        ticks = [(top * k / 4, k / 4) for k in range(5)]
    for value, frac in ticks:
        yy = _TOP + plot_h * (1 - frac)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" y1="{yy:.1f}" x2="{width - _RIGHT}" '
            f'y2="{yy:.1f}"/><text class="tick" x="{_LEFT - 6}" y="{yy + 4:.1f}" '
            f'text-anchor="end">{escape(_fmt(value))}{escape(unit)}</text>'
        )
    return "".join(parts)


def _time_labels(
    times: t.Sequence[dt.datetime], x: t.Callable[[int], float], height: int
) -> str:
    span = times[-1] - times[0]
    fmt = "%H:%M" if span <= dt.timedelta(days=1) else "%b %d %H:%M"
    parts = []
    for i in sorted({0, len(times) // 3, 2 * len(times) // 3, len(times) - 1}):
        parts.append(
            f'<text class="tick" x="{x(i):.1f}" y="{height - 8}" '
            f'text-anchor="middle">{escape(times[i].strftime(fmt))}</text>'
        )
    return "".join(parts)


def _legend(lines: t.Sequence[Line], width: int) -> str:
    parts = []
    x = width - _RIGHT - 56 * len(lines)
    for line in lines:
        parts.append(
            f'<rect class="{escape(line.css)} key" x="{x}" y="{_TOP - 2}" width="10" '
            f'height="10"/><text class="legend" x="{x + 14}" y="{_TOP + 7}">'
            f"{escape(line.label)}</text>"
        )
        x += 56
    return "".join(parts)


def _runs(values: t.Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive points with a value: a gap breaks the line."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, v in enumerate(values):
        if v is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((i, v))
    if current:
        runs.append(current)
    return runs


def _nice(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (0 for 0)."""
    if value <= 0:
        return 0.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def _log_floor(value: float) -> float:
    return float(10 ** math.floor(math.log10(value)))


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    if abs(value) >= 0.01:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "\u2026"
