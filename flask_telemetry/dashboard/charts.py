"""Charts drawn on the server as inline SVG: no script, no external file.

Each chart shows its title and the unit of its values (and of its x axis
where that is not time); a linear y axis runs from 0 in round steps
(:func:`ticks`), whole numbers for counts.

Every text that reaches the SVG goes through :func:`escape` (markupsafe's,
invisible characters shown);
colours come from classes styled by the dashboard's CSS file (presentation
attributes and classes need no ``unsafe-inline`` style in the CSP).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import typing as t

from markupsafe import Markup
from markupsafe import escape as _escape

from ..reading import visible


def escape(value: object) -> Markup:
    """:func:`markupsafe.escape` of ``value`` with its invisible characters
    (bidi controls, isolates) shown as escapes (:func:`visible`)."""
    if isinstance(value, Markup):
        return value
    return _escape(visible(value if isinstance(value, str) else str(value)))


#: Margins around the plot: the title and the unit's row above it, the
#: tick labels and the x axis' caption below.
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 44, 40
#: Baselines of the title's row and of the unit's and legend's row.
_TITLE_Y, _UNIT_Y = 16, 34
#: A linear axis has at most this many steps.
MOST_STEPS = 5
#: Values below this are drawn as a flat series (an axis from 0 to 1).
_FLAT = 1e-9
#: Above this an axis stops at it (the next step could overflow a float).
_HUGE = 1e300


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


def ticks(high: float, *, integer: bool = False, most: int = MOST_STEPS) -> list[float]:
    """The ticks of an axis from 0 that reaches ``high``: steps of 1, 2 or
    5 x 10^n, at most ``most`` of them, whole numbers when ``integer``.

    A flat series (``high`` about 0, negative or not a number) gets 0 and 1.
    """
    if not high > _FLAT:  # NaN too
        return [0.0, 1.0]
    high = min(high, _HUGE)
    step = _round_step(high / max(most, 1))
    if integer:
        step = max(step, 1.0)
    n = max(math.ceil(high / step), 1)
    if (n - 1) * step >= high:  # high / step was a whole number but for rounding
        n -= 1
    return [k * step for k in range(n + 1)]


def tick_labels(values: t.Sequence[float]) -> list[str]:
    """The texts of evenly spaced ``values`` (from :func:`ticks`): as many
    decimals as their step needs, so that no two read the same."""
    step = values[1] - values[0] if len(values) > 1 else 1.0
    return [_tick_label(v, step) for v in values]


def line_chart(
    times: t.Sequence[dt.datetime],
    lines: t.Sequence[Line],
    *,
    title: str,
    unit: str = "",
    integer: bool = False,
    width: int = 420,
    height: int = 200,
    log: bool = False,
) -> Markup:
    """Lines over time (UTC) with a legend, a y axis in ``unit`` from 0 (or
    log-scaled, one tick per power of ten)."""
    values = [v for line in lines for v in line.values if v is not None]
    axis, share = _log_axis(values) if log else _linear_axis(values, integer)
    plot_w = width - _LEFT - _RIGHT
    plot_h = height - _TOP - _BOTTOM
    n = max(len(times), 1)

    def x(i: int) -> float:
        return _LEFT + (plot_w * (i + 0.5) / n)

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - share(v))

    parts = [_open(width, height, title, unit)]
    parts.append(_axes(width, axis, y))
    if times:
        parts.append(_time_labels(times, x, width, height))
    parts.append(_caption(width, height, "time (UTC)"))
    for line in lines:
        parts.append(_line(line, x, y))
        parts.append(_hover_targets(line, times, unit, x, y))
    parts.append(_legend(lines, width))
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    bars: t.Sequence[Bar],
    *,
    title: str,
    unit: str = "",
    x_unit: str = "",
    integer: bool = False,
    width: int = 420,
    height: int = 200,
) -> Markup:
    """Vertical bars with their labels below (in ``x_unit``), a y axis in
    ``unit`` from 0."""
    axis, share = _linear_axis([b.value for b in bars], integer)
    plot_w = width - _LEFT - _RIGHT
    plot_h = height - _TOP - _BOTTOM
    n = max(len(bars), 1)
    slot = plot_w / n
    # Every label, or every second or third... so that they do not overlap
    # (about 6.5 px a character at the ticks' 11 px).
    widest = max((len(b.label) for b in bars), default=1) * 6.5 + 8
    every = max(1, math.ceil(n * widest / plot_w))

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - share(v))

    parts = [_open(width, height, title, unit), _axes(width, axis, y)]
    if x_unit:
        parts.append(_caption(width, height, x_unit))
    for i, bar in enumerate(bars):
        h = _TOP + plot_h - y(bar.value)
        x0 = _LEFT + i * slot + slot * 0.1
        hint = bar.hint or f"{bar.label}: {_with_unit(bar.value, unit)}"
        parts.append(
            f'<rect class="{escape(bar.css)}" x="{x0:.1f}" y="{_TOP + plot_h - h:.1f}" '
            f'width="{slot * 0.8:.1f}" height="{h:.1f}"><title>{escape(hint)}</title>'
            "</rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text class="tick" x="{x0 + slot * 0.4:.1f}" y="{_tick_y(height)}" '
                f'text-anchor="middle">{escape(bar.label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def timeline(
    spans: t.Sequence[Span], *, title: str, unit: str = "ms", width: int = 900
) -> Markup:
    """One row per span on a shared axis of ``unit`` (milliseconds) from 0."""
    row = 22
    label_w = 190
    head = _TITLE_Y + 12  # the title only: the unit is the x axis' caption
    height = head + row * max(len(spans), 1) + _BOTTOM
    axis, share = _linear_axis([s.start_ms + s.length_ms for s in spans], False)
    plot_w = width - label_w - 40

    def x(ms: float) -> float:
        return label_w + plot_w * share(ms)

    parts = [_open(width, height, title, ""), _caption(width, height, unit)]
    for ms, text in axis:
        parts.append(
            f'<line class="grid" x1="{x(ms):.1f}" y1="{head}" x2="{x(ms):.1f}" '
            f'y2="{height - _BOTTOM}"/><text class="tick" x="{x(ms):.1f}" '
            f'y="{_tick_y(height)}" text-anchor="middle">{escape(text)}</text>'
        )
    for i, span in enumerate(spans):
        cy = head + row * i + row / 2
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

#: An axis: its ticks (each value with its text) and, for a value, the
#: share of the axis' length from its start to the value (0 to 1).
_Axis = tuple[list[tuple[float, str]], t.Callable[[float], float]]


def _linear_axis(values: t.Sequence[float], integer: bool) -> _Axis:
    """From 0 in round steps (:func:`ticks`) to at least the largest value;
    a value outside is drawn at the nearer end."""
    steps = ticks(max(values, default=0.0), integer=integer)
    top = steps[-1]

    def share(v: float) -> float:
        return min(max(v, 0.0), top) / top

    return list(zip(steps, tick_labels(steps), strict=True)), share


def _log_axis(values: t.Sequence[float]) -> _Axis:
    """One tick per power of ten, from the one at or below the smallest
    positive value to the one at or above the largest (at least one decade);
    1 to 10 without a positive value."""
    positive = [v for v in values if v > 0 and math.isfinite(v)] or [1.0]
    bottom = _log_floor(min(positive))
    top = max(10 ** math.ceil(math.log10(max(positive))), bottom * 10)
    high = round(math.log10(top))
    low = round(math.log10(bottom))
    steps = [10.0**k for k in range(low, high + 1)]

    def share(v: float) -> float:
        v = min(max(v, bottom), top)
        return (math.log10(v) - math.log10(bottom)) / (
            math.log10(top) - math.log10(bottom)
        )

    return list(zip(steps, [_fmt(v) for v in steps], strict=True)), share


def _line(
    line: Line, x: t.Callable[[int], float], y: t.Callable[[float], float]
) -> str:
    """A line's runs of points (a gap breaks it), a lone point a dot."""
    parts = []
    for run in _runs(line.values):
        if len(run) == 1:
            i, v = run[0]
            parts.append(
                f'<circle class="{escape(line.css)}" cx="{x(i):.1f}" '
                f'cy="{y(v):.1f}" r="2"/>'
            )
        else:
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
            parts.append(
                f'<polyline class="line {escape(line.css)}" points="{points}"/>'
            )
    return "".join(parts)


def _hover_targets(
    line: Line,
    times: t.Sequence[dt.datetime],
    unit: str,
    x: t.Callable[[int], float],
    y: t.Callable[[float], float],
) -> str:
    """Hover targets: the value of each point, as text, without script."""
    parts = []
    for i, value in enumerate(line.values):
        if value is not None:
            when = times[i].strftime("%Y-%m-%d %H:%M") if i < len(times) else ""
            parts.append(
                f'<circle class="hover" cx="{x(i):.1f}" cy="{y(value):.1f}" r="4">'
                f"<title>{escape(line.label)}: {escape(_with_unit(value, unit))} "
                f"at {escape(when)} UTC</title></circle>"
            )
    return "".join(parts)


def _open(width: int, height: int, title: str, unit: str) -> str:
    """The SVG element with its title shown above the plot, and the unit of
    the y axis above that axis."""
    label = f"{title} ({unit})" if unit else title
    shown = f'<text class="unit" x="{_LEFT - 6}" y="{_UNIT_Y}" text-anchor="end">'
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'<text class="title" x="8" y="{_TITLE_Y}">{escape(title)}</text>'
        + (f"{shown}{escape(unit)}</text>" if unit else "")
    )


def _axes(
    width: int, axis: t.Sequence[tuple[float, str]], y: t.Callable[[float], float]
) -> str:
    parts = []
    for value, text in axis:
        yy = y(value)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" y1="{yy:.1f}" x2="{width - _RIGHT}" '
            f'y2="{yy:.1f}"/><text class="tick" x="{_LEFT - 6}" y="{yy + 4:.1f}" '
            f'text-anchor="end">{escape(text)}</text>'
        )
    return "".join(parts)


def _tick_y(height: int) -> int:
    return height - _BOTTOM + 16


def _caption(width: int, height: int, text: str) -> str:
    """The x axis' caption, centred below its tick labels."""
    return (
        f'<text class="unit" x="{(_LEFT + width - _RIGHT) / 2:.1f}" y="{height - 6}" '
        f'text-anchor="middle">{escape(text)}</text>'
    )


def _time_labels(
    times: t.Sequence[dt.datetime],
    x: t.Callable[[int], float],
    width: int,
    height: int,
) -> str:
    span = times[-1] - times[0]
    fmt = "%H:%M" if span <= dt.timedelta(days=1) else "%b %d %H:%M"
    last = len(times) - 1
    parts = []
    # Four labels of hours and minutes fit, three with the date.
    thirds = fmt == "%H:%M"
    inner = {len(times) // 3, 2 * len(times) // 3} if thirds else {len(times) // 2}
    for i in sorted({0, last} | inner):
        # The first and last labels end at the plot's edges, inside the SVG.
        if last and i == 0:
            anchor, xx = "start", float(_LEFT)
        elif last and i == last:
            anchor, xx = "end", float(width - _RIGHT)
        else:
            anchor, xx = "middle", x(i)
        parts.append(
            f'<text class="tick" x="{xx:.1f}" y="{_tick_y(height)}" '
            f'text-anchor="{anchor}">{escape(times[i].strftime(fmt))}</text>'
        )
    return "".join(parts)


def _legend(lines: t.Sequence[Line], width: int) -> str:
    parts = []
    x = width - _RIGHT - 56 * len(lines)
    for line in lines:
        parts.append(
            f'<rect class="{escape(line.css)} key" x="{x}" y="{_UNIT_Y - 9}" '
            f'width="10" height="10"/><text class="legend" x="{x + 14}" '
            f'y="{_UNIT_Y}">{escape(line.label)}</text>'
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


def _round_step(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n at or above ``value`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    for multiple in (1, 2, 5):
        if multiple * power >= value:
            return multiple * power
    return 10 * power


def _tick_label(value: float, step: float) -> str:
    if value == 0:
        return "0"
    if step >= 1e-4 and abs(value) < 1e15:
        decimals = max(0, -math.floor(math.log10(step)))
        text = f"{value:,.{decimals}f}"
        return text.rstrip("0").rstrip(".") if decimals else text
    # At most a few steps of 1, 2 or 5: two significant digits tell them apart.
    return f"{value:.3g}"


def _with_unit(value: float, unit: str) -> str:
    if not unit:
        return _fmt(value)
    return f"{_fmt(value)}{unit}" if unit == "%" else f"{_fmt(value)} {unit}"


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
