"""Samples of large windows: time slices, what they read, how figures scale;
and the dashboard's estimates next to its exact figures, on every database."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from conftest import Bundle
from flask_telemetry import reading
from flask_telemetry.dashboard import views
from flask_telemetry.reading import Sample, series
from flask_telemetry.reading import sample as sampling
from flask_telemetry.storage.row import TraceEvent
from reading_data import event, request_end, store

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def test_slices_are_inside_their_parts_and_add_up_to_the_fraction() -> None:
    sample = Sample(START, START + DAY, 0.05)
    slices = sample.slices()
    assert len(slices) == sampling.SLICES
    part = DAY / sampling.SLICES
    for index, (start, end) in enumerate(slices):
        assert START + part * index <= start < end <= START + part * (index + 1)
        assert end - start == part * 0.05
    total = sum(((end - start) for start, end in slices), dt.timedelta())
    assert total.total_seconds() == pytest.approx(DAY.total_seconds() * 0.05)
    # Offsets move from part to part: no two neighbours start alike.
    offsets = [(s - START - part * i) / part for i, (s, _) in enumerate(slices)]
    assert len({round(o, 6) for o in offsets}) == len(offsets)
    assert sample.scale == pytest.approx(20.0)


def test_of_reads_everything_until_twice_the_target() -> None:
    assert Sample.of(START, START + DAY, rows=200, target=100) is None
    sample = Sample.of(START, START + DAY, rows=1000, target=100)
    assert sample is not None
    assert sample.fraction == pytest.approx(0.1)
    assert Sample.of(START, START, rows=1000, target=100) is None
    with pytest.raises(ValueError, match="target"):
        Sample.of(START, START + DAY, rows=1000, target=0)
    with pytest.raises(ValueError, match="fraction"):
        Sample(START, START + DAY, 1.0)


#: One request every 30 s for a day: 2,880, one in 20 an error; durations
#: cycle through 1..100 ms.
EVERY = dt.timedelta(seconds=30)
COUNT = 2880


@pytest.fixture
def day(bundle: Bundle) -> Bundle:
    rows = [
        request_end(
            "shop.item",
            float(i % 100 + 1),
            status=500 if i % 20 == 0 else 200,
            at=START + EVERY * i + dt.timedelta(seconds=7),
        )
        for i in range(COUNT)
    ]
    rows += [event(occurred_at=START + EVERY * i) for i in range(COUNT)]
    store(bundle, rows)
    return bundle


def test_a_sample_reads_only_its_slices_and_scales_counts(day: Bundle) -> None:
    table = day.traces
    sample = Sample(START, START + DAY, 0.25)
    with day.app.app_context(), day.db.engines[None].connect() as conn:
        exact = series.request_rows(conn, table, since=START, until=START + DAY)
        estimated = series.request_rows(
            conn, table, since=START, until=START + DAY, sample=sample
        )
        [summary] = reading.request_summary(
            conn, table, since=START, until=START + DAY, sample=sample
        )
        counts = reading.event_counts(
            conn, table, since=START, until=START + DAY, sample=sample
        )
        buckets = series.traffic(
            conn, table, since=START, until=START + DAY, buckets=24, sample=sample
        )
    assert exact == COUNT
    # The slices hold a quarter of the day's time, so about a quarter of its
    # evenly spaced rows: scaled back, within a few percent.
    assert estimated == pytest.approx(COUNT, rel=0.05)
    # Read from the slices: a quarter of the rows.
    assert summary.rows == pytest.approx(COUNT / 4, rel=0.05)
    assert summary.requests == pytest.approx(COUNT, rel=0.05)
    assert summary.errors == pytest.approx(COUNT / 20, rel=0.25)
    assert summary.p50_ms == pytest.approx(50.5, rel=0.15)
    by_type: dict[str, int] = {}
    for c in counts:
        by_type[c.event_type] = by_type.get(c.event_type, 0) + c.count
    assert by_type["cache_miss"] == pytest.approx(COUNT, rel=0.05)
    assert by_type["http_request_end"] == pytest.approx(COUNT, rel=0.05)
    assert sum(b.requests for b in buckets) == pytest.approx(COUNT, rel=0.05)
    # Every hour's bucket got rows: the slices are spread over the day.
    assert all(b.requests > 0 for b in buckets)


def test_rows_outside_the_slices_are_not_read(bundle: Bundle) -> None:
    sample = Sample(START, START + DAY, 0.1)
    (first_start, first_end), (second_start, _) = sample.slices()[:2]
    inside = first_start + (first_end - first_start) / 2
    outside = first_end + (second_start - first_end) / 2
    store(
        bundle,
        [
            request_end("shop.item", 5.0, at=inside),
            request_end("shop.item", 9999.0, status=500, at=outside),
            # The end of a slice is outside it.
            request_end("shop.item", 8888.0, at=first_end),
        ],
    )
    with bundle.app.app_context(), bundle.db.engines[None].connect() as conn:
        [summary] = reading.request_summary(
            bundle.db.engines[None], bundle.traces, since=START, until=START + DAY
        )
        [sampled] = reading.request_summary(
            conn, bundle.traces, since=START, until=START + DAY, sample=sample
        )
        slowest = series.slowest(
            conn, bundle.traces, since=START, until=START + DAY, sample=sample
        )
    assert (summary.rows, summary.max_ms, summary.errors) == (3, 9999.0, 1)
    assert (sampled.rows, sampled.max_ms, sampled.errors) == (1, 5.0, 0)
    assert sampled.requests == 10
    assert [s.duration_ms for s in slowest] == [5.0]


def _number(page: str, label: str) -> int:
    found = re.search(r"<strong>([\d,]+)</strong> " + label, page)
    assert found, label
    return int(found.group(1).replace(",", ""))


def test_the_dashboard_estimates_large_windows_and_is_exact_on_request(
    day: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, telemetry = day.app, day.telemetry
    telemetry.init_dashboard(app, authorize=lambda: True)
    client = app.test_client()
    window = "window=custom&since=2026-01-01T00:00&until=2026-01-02T00:00"
    # Below twice the sample size, every row is read.
    page = client.get(f"/_telemetry/?{window}").get_data(as_text=True)
    assert "Estimated" not in page
    assert _number(page, "requests") == COUNT
    monkeypatch.setattr(views, "SAMPLE_ROWS", 300)
    page = client.get(f"/_telemetry/?{window}").get_data(as_text=True)
    assert "Estimated from the requests of" in page
    assert "Estimated from the events of" in page
    estimated = _number(page, "requests")
    assert estimated == pytest.approx(COUNT, rel=0.1)
    assert 'exact=1"' in page
    page = client.get(f"/_telemetry/?{window}&exact=1").get_data(as_text=True)
    assert "Estimated" not in page
    assert _number(page, "requests") == COUNT
    assert _number(page, "errors") == COUNT // 20
    route = client.get(f"/_telemetry/route?name=shop.item&{window}")
    text = route.get_data(as_text=True)
    assert route.status_code == 200
    assert "Estimated from the requests of" in text
    assert "Slowest sampled requests" in text
    assert _number(text, "requests") == pytest.approx(COUNT, rel=0.1)
    exact = client.get(f"/_telemetry/route?name=shop.item&{window}&exact=1")
    assert _number(exact.get_data(as_text=True), "requests") == COUNT


def test_a_sample_holding_every_row_gives_the_exact_figures_scaled(
    bundle: Bundle,
) -> None:
    """Rows only inside the slices: the sampled summary (streamed on MySQL
    and MariaDB, grouped on PostgreSQL) has the exact percentiles, and
    counts times the scale."""
    sample = Sample(START, START + DAY, 0.2)
    rows: list[TraceEvent] = []
    for index, (start, end) in enumerate(sample.slices()):
        middle = start + (end - start) / 2
        route = ("shop.item", "shop.cart", None)[index % 3]
        rows.append(request_end(route, float(index % 37) + 0.5, at=middle))
        status = 503 if index % 10 == 0 else 404 if index % 7 == 0 else 200
        rows.append(request_end(route, float(index), status=status, at=start))
        if index % 5 == 0:
            last = end - dt.timedelta(microseconds=1)
            rows.append(request_end(route, 9.0, sample_rate=0.5, at=last))
    store(bundle, rows)
    with bundle.app.app_context():
        engine = bundle.db.engines[None]
        exact = reading.request_summary(
            engine, bundle.traces, since=START, until=START + DAY
        )
        sampled = reading.request_summary(
            engine, bundle.traces, since=START, until=START + DAY, sample=sample
        )
    assert [s.route_name for s in sampled] == [s.route_name for s in exact]
    for ours, truth in zip(sampled, exact, strict=True):
        assert ours.rows == truth.rows
        for name in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms", "error_rate"):
            assert getattr(ours, name) == pytest.approx(getattr(truth, name))
        for name in ("requests", "errors", "client_errors"):
            assert getattr(ours, name) == pytest.approx(
                getattr(truth, name) * sample.scale, abs=sample.scale
            )
