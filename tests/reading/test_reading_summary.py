"""request_summary: counts and percentiles equal a Python reference."""

from __future__ import annotations

import datetime as dt
import random
import statistics

import pytest

from conftest import Bundle
from flask_telemetry.reading import RouteSummary, weighted_percentiles
from reading_data import NOW, linear, request_end, store, weighted

FRACTIONS = (0.5, 0.95, 0.99)


def _summary(bundle: Bundle, **kwargs: object) -> dict[str | None, RouteSummary]:
    kwargs.setdefault("since", dt.timedelta(hours=1))
    with bundle.app.app_context():
        found = bundle.telemetry.request_summary(**kwargs)  # type: ignore[arg-type]
    return {s.route_name: s for s in found}


def _percentiles(summary: RouteSummary) -> list[float]:
    return [summary.p50_ms, summary.p95_ms, summary.p99_ms]


def test_percentiles_equal_the_linear_method(bundle: Bundle) -> None:
    rng = random.Random(12)
    durations: dict[str | None, list[float]] = {
        "one": [12.5],
        "two": [3.0, 10.0],
        "many": [round(rng.lognormvariate(3, 1), 3) for _ in range(537)],
        "ties": [5.0] * 40 + [7.25] * 3 + [5.0] * 7 + [100.0],
        None: [1.5, 2.5, 0.125],
    }
    store(
        bundle,
        [request_end(route, d) for route, values in durations.items() for d in values],
    )
    found = _summary(bundle)
    assert set(found) == set(durations)
    for route, values in durations.items():
        summary = found[route]
        expected = [linear(values, p) for p in FRACTIONS]
        assert _percentiles(summary) == pytest.approx(expected, abs=1e-6), route
        if len(values) > 1:
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            assert _percentiles(summary) == pytest.approx(
                [cuts[49], cuts[94], cuts[98]], abs=1e-6
            )
        assert summary.requests == summary.rows == len(values)
        assert summary.mean_ms == pytest.approx(statistics.fmean(values), abs=1e-6)
        assert summary.max_ms == max(values)
    assert _percentiles(found["one"]) == [12.5, 12.5, 12.5]
    assert _percentiles(found["two"]) == pytest.approx([6.5, 9.65, 9.93], abs=1e-9)
    # Ordered by total time, descending.
    totals = [s.requests * s.mean_ms for s in found.values()]
    assert totals == sorted(totals, reverse=True)


def test_sampled_rows_stand_for_their_requests(bundle: Bundle) -> None:
    rng = random.Random(7)
    rows: list[tuple[float, float]] = []  # (duration, sample rate)
    for _ in range(300):
        rows.append((round(rng.uniform(1, 50), 3), rng.choice([0.5, 0.25, 0.1])))
    for _ in range(60):  # kept whole: slow or failing requests
        rows.append((round(rng.uniform(40, 900), 3), 1.0))
    store(bundle, [request_end("api.items", d, sample_rate=r) for d, r in rows])
    (summary,) = _summary(bundle).values()
    # Whole-number weights: the linear method over the repeated values.
    repeated = [d for d, r in rows for _ in range(round(1 / r))]
    expected = [linear(repeated, p) for p in FRACTIONS]
    assert _percentiles(summary) == pytest.approx(expected, abs=1e-6)
    assert summary.requests == len(repeated)
    assert summary.rows == len(rows)
    assert summary.mean_ms == pytest.approx(statistics.fmean(repeated), abs=1e-6)
    # Without the weights the figures would lean to the slow requests.
    assert summary.p50_ms < linear([d for d, _ in rows], 0.5)


def test_fractional_weights_follow_the_documented_method(bundle: Bundle) -> None:
    rng = random.Random(3)
    rows = [
        (round(rng.uniform(1, 100), 3), rng.choice([0.3, 0.7, 1.0])) for _ in range(123)
    ]
    rows += [(50.0, 0.3)] * 5  # ties among sampled rows
    store(bundle, [request_end("r", d, sample_rate=s) for d, s in rows])
    (summary,) = _summary(bundle).values()
    pairs = [(d, 1 / s) for d, s in rows]
    expected = [weighted(pairs, p) for p in FRACTIONS]
    assert _percentiles(summary) == pytest.approx(expected, abs=1e-6)
    assert summary.requests == round(sum(w for _, w in pairs))


def test_counts_errors_and_slow(bundle: Bundle) -> None:
    store(
        bundle,
        [
            request_end("shop", 10, status=200),
            request_end("shop", 11, status=404),
            request_end("shop", 12, status=403),
            request_end("shop", 13, status=503),
            request_end("shop", 14, status=500, exception="KeyError"),
            request_end("shop", 1500, status=200, slow=True),
            request_end("shop", 9, status=200, sample_rate=0.5),
            request_end("shop", 9, status=200, at=NOW - dt.timedelta(hours=3)),
            request_end("other", 1, status=200),
        ],
    )
    found = _summary(bundle)
    shop = found["shop"]
    assert shop.requests == 8
    assert shop.rows == 7
    assert shop.errors == 2
    assert shop.client_errors == 2
    assert shop.slow == 1
    assert shop.error_rate == pytest.approx(2 / 8)
    assert shop.max_ms == 1500
    assert list(found) == ["shop", "other"]
    assert list(_summary(bundle, route="sh*")) == ["shop"]
    assert _summary(bundle, since=dt.timedelta(hours=4))["shop"].requests == 9
    assert _summary(
        bundle, since=dt.timedelta(hours=4), until=dt.timedelta(hours=1)
    ) == {
        "shop": _summary(
            bundle, since=dt.timedelta(hours=4), until=dt.timedelta(hours=1)
        )["shop"]
    }
    assert _summary(bundle, since=NOW + dt.timedelta(hours=1)) == {}


def test_weighted_percentiles_reduce_to_the_linear_method() -> None:
    rng = random.Random(5)
    for n in (1, 2, 3, 10, 101):
        values = sorted(round(rng.uniform(0, 10), 2) for _ in range(n))
        got = weighted_percentiles([(v, 1.0) for v in values], float(n), FRACTIONS)
        assert got == pytest.approx([linear(values, p) for p in FRACTIONS], abs=1e-12)
    with pytest.raises(ValueError, match="No rows"):
        weighted_percentiles([], 0.0, FRACTIONS)


def test_routes_differing_only_in_case(bundle: Bundle, backend: str) -> None:
    """MySQL/MariaDB's default collation makes them one route; the figures
    stay exact either way."""
    upper = [1.0, 5.0, 9.0, 30.0]
    lower = [2.0, 3.0, 50.0]
    store(
        bundle,
        [request_end("Shop.item", d, sample_rate=0.5) for d in upper]
        + [request_end("shop.item", d) for d in lower],
    )
    found = _summary(bundle)
    if backend == "mariadb":
        (summary,) = found.values()
        pairs = [(d, 2.0) for d in upper] + [(d, 1.0) for d in lower]
        assert summary.requests == 11
        assert _percentiles(summary) == pytest.approx(
            [weighted(pairs, p) for p in FRACTIONS], abs=1e-6
        )
    else:
        assert found["Shop.item"].requests == 8
        assert _percentiles(found["shop.item"]) == pytest.approx(
            [linear(lower, p) for p in FRACTIONS], abs=1e-6
        )
