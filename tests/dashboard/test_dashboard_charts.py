"""The dashboard's charts: axis ticks, titles and units, without a database."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_telemetry.dashboard import charts

#: The y axis' tick labels: right-aligned next to the plot.
_Y_TICK = re.compile(r'<text class="tick" x="50" y="[\d.]+" text-anchor="end">([^<]*)<')


def y_labels(svg: str) -> list[str]:
    """The y axis' tick labels of ``svg``, from the bottom up."""
    return _Y_TICK.findall(svg)


def _is_round_step(step: float) -> bool:
    """Whether ``step`` is 1, 2 or 5 x 10^n."""
    power = 10.0 ** math.floor(math.log10(step) + 1e-9)
    return any(math.isclose(step, m * power, rel_tol=1e-9) for m in (1, 2, 5, 10))


def _check_axis(high: float, found: list[float]) -> None:
    assert found[0] == 0
    assert all(a < b for a, b in itertools.pairwise(found))
    assert found[-1] >= high  # the axis covers the data
    assert found[-2] < high  # and ends at the first step past it
    assert 2 <= len(found) <= charts.MOST_STEPS + 1
    steps = {round(b - a, 12) for a, b in itertools.pairwise(found)}
    step = found[1] - found[0]
    assert all(math.isclose(s, step, rel_tol=1e-6) for s in steps)
    assert _is_round_step(step)
    labels = charts.tick_labels(found)
    assert len(set(labels)) == len(labels), labels


@given(st.integers(min_value=1, max_value=10**12))
def test_count_ticks_are_round_integers_covering_the_data(high: int) -> None:
    found = charts.ticks(high, integer=True)
    _check_axis(high, found)
    assert all(v == int(v) for v in found)
    assert all("." not in label for label in charts.tick_labels(found))


@given(
    st.floats(min_value=1e-6, max_value=1e300, allow_nan=False, allow_infinity=False)
)
def test_value_ticks_are_round_steps_with_distinct_labels(high: float) -> None:
    _check_axis(high, charts.ticks(high))


@given(st.floats(min_value=1e-6, max_value=1e6))
def test_labels_read_back_as_the_ticks(high: float) -> None:
    found = charts.ticks(high)
    step = found[1]
    for value, label in zip(found, charts.tick_labels(found), strict=True):
        assert float(label.replace(",", "")) == pytest.approx(value, abs=step / 100)


@pytest.mark.parametrize("high", [0.0, -3.0, 1e-12, math.nan])
@pytest.mark.parametrize("integer", [True, False])
def test_a_flat_series_gets_an_axis_from_0_to_1(high: float, integer: bool) -> None:
    assert charts.ticks(high, integer=integer) == [0.0, 1.0]
    assert charts.tick_labels([0.0, 1.0]) == ["0", "1"]


@pytest.mark.parametrize(
    ("high", "integer", "labels"),
    [
        # Counts the old axis showed as 62.5 and 188 (a quarter of 250, 750).
        (250, True, ["0", "50", "100", "150", "200", "250"]),
        (750, True, ["0", "200", "400", "600", "800"]),
        (3, True, ["0", "1", "2", "3"]),
        (0.4, True, ["0", "1"]),
        (0.02, False, ["0", "0.005", "0.01", "0.015", "0.02"]),
        (1.5, False, ["0", "0.5", "1", "1.5"]),
        (12_345, True, ["0", "5,000", "10,000", "15,000"]),
    ],
)
def test_ticks_of_some_axes(high: float, integer: bool, labels: list[str]) -> None:
    assert charts.tick_labels(charts.ticks(high, integer=integer)) == labels


def _hours(n: int, *, days: bool = False) -> list[dt.datetime]:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    step = dt.timedelta(hours=3 if days else 1)
    return [start + step * i for i in range(n)]


def test_a_flat_error_rate_reads_0_to_1_percent() -> None:
    svg = charts.line_chart(
        _hours(24),
        [charts.Line(label="errors", css="s3", values=[0.0] * 20 + [None] * 4)],
        title="Error rate",
        unit="%",
    )
    assert y_labels(svg) == ["0", "1"]


def test_count_charts_have_integer_ticks() -> None:
    bars = [charts.Bar(label=str(s), value=v) for s, v in [(200, 750), (404, 3)]]
    svg = charts.bar_chart(
        bars, title="Requests by status", unit="requests", x_unit="HTTP", integer=True
    )
    assert y_labels(svg) == ["0", "200", "400", "600", "800"]
    one = charts.bar_chart(
        [charts.Bar(label="200", value=1)],
        title="t",
        unit="requests",
        x_unit="x",
        integer=True,
    )
    assert y_labels(one) == ["0", "1"]


def test_every_chart_shows_its_title_and_units() -> None:
    line = charts.line_chart(
        _hours(3),
        [charts.Line(label="p50", css="s1", values=[1.0, 20.0, 300.0])],
        title="Latency percentiles",
        unit="ms",
        log=True,
    )
    bar = charts.bar_chart(
        [charts.Bar(label="1", value=2)],
        title="Requests by duration",
        unit="requests",
        x_unit="duration in ms",
        integer=True,
    )
    timeline = charts.timeline(
        [charts.Span(label="a", start_ms=0, length_ms=12.5)],
        title="Events in time",
        unit="ms from the start",
    )
    for svg, title, units in [
        (line, "Latency percentiles", ["ms", "time (UTC)"]),
        (bar, "Requests by duration", ["requests", "duration in ms"]),
        (timeline, "Events in time", ["ms from the start"]),
    ]:
        assert f'<text class="title" x="8" y="16">{title}</text>' in svg
        shown = re.findall(r'<text class="unit"[^>]*>([^<]*)</text>', svg)
        assert sorted(shown) == sorted(units)
    assert y_labels(line) == ["1", "10", "100", "1,000"]


def test_time_labels_stay_inside_the_chart() -> None:
    for times in (_hours(24), _hours(56, days=True)):
        svg = charts.line_chart(
            times,
            [charts.Line(label="r", css="s1", values=[1.0] * len(times))],
            title="Requests per minute",
            unit="req/min",
            width=420,
        )
        anchors = re.findall(
            r'<text class="tick" x="([\d.]+)" y="\d+" text-anchor="(\w+)">', svg
        )
        below = [(float(x), a) for x, a in anchors if a != "end" or float(x) > 60]
        assert below[0] == (56.0, "start")
        assert below[-1] == (404.0, "end")
        assert len(below) == (3 if times[-1] - times[0] > dt.timedelta(days=1) else 4)


def test_bar_labels_leave_room_for_each_other() -> None:
    labels = ["31.6", "56.2", "100", "178", "316", "562", "1,000", "1,778"]
    labels += ["3,162", "5,623", "10,000", "17,783"]  # 12 bins, as in a day
    svg = charts.bar_chart(
        [charts.Bar(label=label, value=1) for label in labels],
        title="Requests by duration",
        unit="requests",
        x_unit="ms",
        integer=True,
    )
    shown = re.findall(
        r'<text class="tick" x="([\d.]+)" y="\d+" text-anchor="middle">([^<]*)<', svg
    )
    assert shown[0] == (shown[0][0], "31.6")
    assert 4 <= len(shown) < len(labels)
    for (x0, a), (x1, b) in itertools.pairwise(shown):
        # About 6.5 px a character at 11 px: half of each label either side.
        assert float(x1) - float(x0) >= (len(a) + len(b)) / 2 * 6.5
