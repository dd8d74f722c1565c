"""Rollups: exact counts and percentiles within 1%, whatever the window.

Every figure read from the rollups is compared with the same figure read
from the raw rows (``reading.request_summary``, which computes exact
percentiles), on every database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import random
import signal
import subprocess
import sys
import threading
import time
import typing as t

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Bundle, MakeApp
from flask_telemetry import reading
from flask_telemetry.reading import rollups, sketch
from reading_data import engine_of, event, linear, request_end, store

NOW = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
ROUTES = ["shop.pay", "shop.item", None, "api.v1.list"]


def _rows(rng: random.Random, n: int, span: dt.timedelta, **kw: t.Any) -> list[t.Any]:
    found = []
    for _ in range(n):
        at = NOW - dt.timedelta(seconds=rng.uniform(0, span.total_seconds()))
        status = rng.choice([200, 200, 200, 201, 404, 500])
        found.append(
            request_end(
                rng.choice(ROUTES),
                round(rng.lognormvariate(3, 1.5), 3),
                status=status,
                exception="KeyError" if status == 500 and rng.random() < 0.5 else None,
                slow=rng.random() < 0.05,
                at=at,
                **kw,
            )
        )
    return found


@pytest.fixture
def folded(make_app: MakeApp) -> Bundle:
    bundle = make_app(TELEMETRY_DELIVERY="sync", TELEMETRY_ROLLUPS=True)
    rng = random.Random(7)
    store(bundle, _rows(rng, 1500, dt.timedelta(days=3)))
    # A few request ends stored by other code: counted as unreadable.
    store(
        bundle,
        [
            event(
                event_type="http_request_end",
                route_name="shop.pay",
                metadata={"status": "200 OK", "duration_ms": 1.0},
                occurred_at=NOW - dt.timedelta(hours=5),
            ),
            event(event_type="cache_miss", occurred_at=NOW - dt.timedelta(hours=1)),
        ],
    )
    with bundle.app.app_context():
        result = bundle.telemetry.rollup()
    assert result.rows == 1500
    return bundle


def _raw(bundle: Bundle, since: t.Any, until: t.Any = None) -> reading.Summaries:
    return reading.request_summary(
        engine_of(bundle), bundle.traces, since=since, until=until
    )


def _compare(rolled: reading.Summaries, raw: reading.Summaries) -> None:
    assert rolled.unreadable == raw.unreadable
    by_route = {r.route_name: r for r in raw}
    assert {r.route_name for r in rolled} == set(by_route)
    for r in rolled:
        exact = by_route[r.route_name]
        for name in ("requests", "errors", "client_errors", "slow", "rows"):
            assert getattr(r, name) == getattr(exact, name), (r.route_name, name)
        assert r.mean_ms == pytest.approx(exact.mean_ms, rel=1e-9)
        assert r.max_ms == pytest.approx(exact.max_ms, rel=1e-9)
        for name in ("p50_ms", "p95_ms", "p99_ms"):
            assert getattr(r, name) == pytest.approx(getattr(exact, name), rel=0.01), (
                r.route_name,
                name,
            )


def test_every_window_agrees_with_the_raw_rows(folded: Bundle) -> None:
    rng = random.Random(3)
    windows: list[tuple[t.Any, t.Any]] = [
        (dt.timedelta(hours=1), None),
        (dt.timedelta(hours=24), None),
        (dt.timedelta(days=7), None),
        (NOW - dt.timedelta(days=2, minutes=17), NOW - dt.timedelta(hours=3)),
    ]
    for _ in range(8):
        a = NOW - dt.timedelta(seconds=rng.uniform(0, 4 * 86400))
        b = a + dt.timedelta(seconds=rng.uniform(1, 3 * 86400))
        windows.append((a, b))
    with folded.app.app_context():
        for since, until in windows:
            rolled = folded.telemetry.request_summary(since=since, until=until)
            _compare(rolled, _raw(folded, since, until))


def test_the_table_holds_minutes_hours_and_days(folded: Bundle) -> None:
    with folded.app.app_context():
        table = folded.telemetry.rollup_model.__table__
    with engine_of(folded).connect() as conn:
        levels: dict[int, int] = {
            int(level): int(rows)
            for level, rows in conn.execute(
                sa.select(table.c.bucket_seconds, sa.func.sum(table.c.rows)).group_by(
                    table.c.bucket_seconds
                )
            )
        }
        recent = conn.execute(
            sa.select(sa.func.sum(table.c.rows)).where(
                table.c.bucket_seconds == 60,
            )
        ).scalar_one()
    # Hours and days count every folded row once (the mark row holds none);
    # minutes are kept for two days only.
    assert levels[0] == 0
    assert levels[3600] == levels[86400] == 1500
    assert levels[60] == recent
    assert 0 < levels[60] < 1500
    with folded.app.app_context():
        two_days = _raw(folded, dt.timedelta(days=2) - dt.timedelta(minutes=1))
    assert levels[60] >= sum(r.rows for r in two_days)


def _content(bundle: Bundle) -> list[tuple[t.Any, ...]]:
    with bundle.app.app_context():
        table = bundle.telemetry.rollup_model.__table__
    columns = [
        c
        for c in table.c
        if c.name not in ("id", "folded_at", "histogram", "db_histogram")
    ]
    with engine_of(bundle).connect() as conn:
        rows = conn.execute(
            sa.select(*columns, sa.cast(table.c.histogram, sa.Text))
            .where(table.c.bucket_seconds > 0)
            .order_by(*columns)
        ).all()
    return [(*row[:-1], json.loads(row[-1]) if row[-1] else None) for row in rows]


def test_folding_again_changes_nothing(folded: Bundle) -> None:
    before = _content(folded)
    with folded.app.app_context():
        folded.telemetry.rollup()
        folded.telemetry.rollup(since=dt.timedelta(days=10))
    assert _content(folded) == before


def test_two_rollups_at_once_count_each_row_once(make_app: MakeApp) -> None:
    bundle = make_app(TELEMETRY_DELIVERY="sync", TELEMETRY_ROLLUPS=True)
    store(bundle, _rows(random.Random(5), 600, dt.timedelta(days=2)))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with bundle.app.app_context():
                bundle.telemetry.rollup(since=dt.timedelta(days=3))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # SQLite allows one writer: the second may wait its turn, never fail.
    assert not errors, errors
    with bundle.app.app_context():
        rolled = bundle.telemetry.request_summary(since=dt.timedelta(days=3))
    assert sum(r.requests for r in rolled) == 600
    # Each level holds each row once: the upserts replaced, never added.
    assert sum(row[4] for row in _content(bundle) if row[0] == 3600) == 600


def test_late_rows_within_the_grace_are_counted(folded: Bundle) -> None:
    # Three minutes before the clock of now (NOW is when the module loaded).
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)
    late = request_end("shop.pay", 42.0, at=at)
    store(folded, [late])
    with folded.app.app_context():
        folded.telemetry.rollup()
        rolled = folded.telemetry.request_summary(since=dt.timedelta(hours=1))
    _compare(rolled, _raw(folded, dt.timedelta(hours=1)))


def test_prune_keeps_the_figures(folded: Bundle) -> None:
    with folded.app.app_context():
        before = folded.telemetry.request_summary(since=dt.timedelta(days=4))
        result = folded.telemetry.prune(older_than_days=1)
        assert result.deleted > 0
        after = folded.telemetry.request_summary(since=dt.timedelta(days=4))
        # Re-folding over the pruned range changes nothing.
        folded.telemetry.rollup(since=dt.timedelta(days=4))
        again = folded.telemetry.request_summary(since=dt.timedelta(days=4))
    # Windows reaching before the raw rows start on a bucket's edge: the
    # counts of whole days are exact.
    for figures in (after, again):
        assert {r.route_name: r.requests for r in figures} == {
            r.route_name: r.requests for r in before
        }


def test_aging_keeps_the_counts(folded: Bundle) -> None:
    """Minutes aged out leave hours and days that count the same rows."""
    with folded.app.app_context():
        table = folded.telemetry.rollup_model.__table__
        traces = folded.traces
        engine = engine_of(folded)
        later = NOW + dt.timedelta(days=3)
        result = rollups.rollup(engine, traces, table, now=later)
        assert result.aged > 0
        whole = rollups.summary(
            engine,
            traces,
            table,
            since=NOW - dt.timedelta(days=4),
            until=NOW + dt.timedelta(minutes=1),
            now=later,
        )
    assert sum(r.requests for r in whole) == 1500


def test_releases_are_kept_and_compared(make_app: MakeApp) -> None:
    bundle = make_app(
        TELEMETRY_DELIVERY="sync", TELEMETRY_ROLLUPS=True, TELEMETRY_RELEASE="r1"
    )
    client = bundle.app.test_client()

    @bundle.app.get("/work")
    def work() -> str:
        return "ok"

    for _ in range(3):
        client.get("/work")
    bundle.app.extensions["telemetry"].recorder.release = "r2"
    client.get("/work")
    with bundle.app.app_context():
        rows = bundle.telemetry.events(event_type="http_request_end")
        assert sorted(str(e.metadata.get("release")) for e in rows) == [
            "r1",
            "r1",
            "r1",
            "r2",
        ]
        bundle.telemetry.rollup()
        one = bundle.telemetry.request_summary(
            since=dt.timedelta(hours=1), release="r1"
        )
        two = bundle.telemetry.request_summary(
            since=dt.timedelta(hours=1), release="r2"
        )
    assert [r.requests for r in one] == [3]
    assert [r.requests for r in two] == [1]


def test_the_model_needs_rollups_on(make_app: MakeApp) -> None:
    bundle = make_app()
    with bundle.app.app_context(), pytest.raises(RuntimeError, match="ROLLUPS"):
        bundle.telemetry.rollup_model  # noqa: B018


# -- the histogram itself ----------------------------------------------------


durations = st.one_of(
    st.floats(min_value=0, max_value=1e9, allow_nan=False),
    st.sampled_from([0.0, 1.0, 1e-6, 5.5, 1e9]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(durations, min_size=1, max_size=300))
def test_quantiles_are_within_one_percent(values: list[float]) -> None:
    histogram: sketch.Histogram = {}
    for value in values:
        key = sketch.bin_of(value)
        histogram[key] = histogram.get(key, 0.0) + 1.0
    found = sketch.quantiles(histogram, (0.0, 0.5, 0.95, 0.99, 1.0))
    ordered = sorted(values)
    for fraction, estimate in zip((0.0, 0.5, 0.95, 0.99, 1.0), found, strict=True):
        exact = linear(ordered, fraction)
        assert estimate is not None
        assert math.isclose(estimate, exact, rel_tol=0.01, abs_tol=1e-12), (
            fraction,
            estimate,
            exact,
        )


def test_the_database_bins_as_python_does(make_app: MakeApp) -> None:
    bundle = make_app()
    values = [0.0, 1e-6, 0.001, 0.5, 1.0, 1.0202, 3.14159, 999.999, 12345.678, 1e9]
    with engine_of(bundle).connect() as conn:
        for value in values:
            found = conn.execute(
                sa.select(sketch.sql_bin(sa.literal(value, sa.Float)))
            ).scalar()
            assert sketch.key_of(found) == sketch.bin_of(value), value
            # The promise is 1%; the sketch keeps to 0.9% (its margin).
            assert sketch.value(sketch.key_of(found)) == pytest.approx(
                value, rel=sketch.RELATIVE_ACCURACY * (1 + 1e-9)
            )


# -- the commands ------------------------------------------------------------


def test_the_rollup_command(make_app: MakeApp) -> None:
    bundle = make_app(TELEMETRY_DELIVERY="sync", TELEMETRY_ROLLUPS=True)
    store(bundle, _rows(random.Random(9), 50, dt.timedelta(hours=5)))
    runner = bundle.app.test_cli_runner()
    result = runner.invoke(args=["telemetry", "rollup", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["rows"] == 50
    text = runner.invoke(args=["telemetry", "rollup", "--since", "1d"])
    assert text.exit_code == 0, text.output
    assert "Folded 50 request ends" in text.output
    bad = runner.invoke(args=["telemetry", "rollup", "--since", "soon"])
    assert bad.exit_code == 2


def test_the_rollup_command_says_when_rollups_are_off(make_app: MakeApp) -> None:
    bundle = make_app()
    result = bundle.app.test_cli_runner().invoke(args=["telemetry", "rollup"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: Rollups are off")
    assert "TELEMETRY_ROLLUPS" in result.output


@pytest.mark.parametrize("rollups_on", [True, False])
def test_report_compares_releases_and_gates(
    make_app: MakeApp, rollups_on: bool
) -> None:
    bundle = make_app(TELEMETRY_DELIVERY="sync", TELEMETRY_ROLLUPS=rollups_on)

    def ends(release: str, ms: float, status: int = 200) -> list[t.Any]:
        found = []
        for i in range(30):
            row = request_end("shop.pay", ms + i, status=status)
            found.append(
                dataclasses.replace(
                    row, metadata={**(row.metadata or {}), "release": release}
                )
            )
        return found

    store(bundle, ends("r0", 10.0) + ends("r1", 30.0) + ends("r2", 10.5))
    runner = bundle.app.test_cli_runner()
    if rollups_on:
        assert runner.invoke(args=["telemetry", "rollup"]).exit_code == 0
    args = ["telemetry", "report", "--since", "1h", "--json"]
    slower = runner.invoke(args=[*args, "--release", "r1", "--baseline-release", "r0"])
    assert slower.exit_code == 3, slower.output
    data = json.loads(slower.output)
    assert data["worse"] == 1
    route = data["routes"][0]
    assert route["route_name"] == "shop.pay"
    assert route["current"]["requests"] == route["baseline"]["requests"] == 30
    assert route["p95_ms_change"] > 0.5
    same = runner.invoke(args=[*args, "--release", "r2", "--baseline-release", "r0"])
    assert same.exit_code == 0, same.output
    text = runner.invoke(
        args=[
            "telemetry",
            "report",
            "--since",
            "1h",
            "--release",
            "r1",
            "--baseline-release",
            "r0",
        ]
    )
    assert text.exit_code == 3
    assert "! shop.pay" in text.output
    earlier = runner.invoke(args=[*args, "--baseline", "1d"])
    assert earlier.exit_code == 0, earlier.output
    assert json.loads(earlier.output)["routes"][0]["baseline"] is None
    lonely = runner.invoke(args=[*args, "--baseline-release", "r0"])
    assert lonely.exit_code == 2


def test_the_pages_agree_with_report(folded: Bundle) -> None:
    folded.telemetry.init_dashboard(folded.app, authorize=lambda: True)
    client = folded.app.test_client()
    runner = folded.app.test_cli_runner()
    until = NOW + dt.timedelta(minutes=1)
    for span in (dt.timedelta(hours=24), dt.timedelta(days=7), dt.timedelta(days=90)):
        since = until - span
        report = json.loads(
            runner.invoke(
                args=[
                    "telemetry",
                    "report",
                    "--since",
                    since.isoformat(),
                    "--until",
                    until.isoformat(),
                    "--json",
                    "--top",
                    "99",
                ]
            ).output
        )
        total = sum(r["requests"] for r in report["routes"])
        window = (
            f"window=custom&since={since:%Y-%m-%dT%H:%M}&until={until:%Y-%m-%dT%H:%M}"
        )
        page = client.get(f"/_telemetry/?{window}")
        assert page.status_code == 200, span
        text = page.get_data(as_text=True)
        assert "A custom window spans at most" not in text
        assert f"<strong>{total:,}</strong> requests" in text, span
        assert "counts are exact" in text
        pay = next(r for r in report["routes"] if r["route_name"] == "shop.pay")
        route = client.get(f"/_telemetry/route?name=shop.pay&{window}")
        assert route.status_code == 200
        assert f"<strong>{pay['requests']:,}</strong> requests" in route.get_data(
            as_text=True
        )
    for window in ("30d", "90d"):
        assert client.get(f"/_telemetry/?window={window}").status_code == 200
    unmatched = client.get("/_telemetry/route?unmatched=1&window=90d")
    assert unmatched.status_code == 200


def test_the_chart_counts_every_request(folded: Bundle) -> None:
    with folded.app.app_context():
        table = folded.telemetry.rollup_model.__table__
    engine = engine_of(folded)
    for span in (dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(days=4)):
        until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        buckets = rollups.traffic(
            engine, folded.traces, table, since=until - span, until=until
        )
        assert len(buckets) <= rollups.MAX_BUCKETS
        first = buckets[0].start
        raw = _raw(folded, first, until)
        assert sum(b.requests for b in buckets) == sum(r.requests for r in raw)
        assert sum(b.errors for b in buckets) == sum(r.errors for r in raw)


@pytest.mark.parametrize("rollups_on", [True, False])
def test_the_compare_page(make_app: MakeApp, rollups_on: bool) -> None:
    bundle = make_app(TELEMETRY_DELIVERY="sync", TELEMETRY_ROLLUPS=rollups_on)
    rows = []
    for release, ms in (("r0", 10.0), ("r1", 40.0)):
        for i in range(25):
            row = request_end("shop.pay", ms + i)
            rows.append(
                dataclasses.replace(
                    row, metadata={**(row.metadata or {}), "release": release}
                )
            )
    store(bundle, rows)
    if rollups_on:
        with bundle.app.app_context():
            bundle.telemetry.rollup()
    bundle.telemetry.init_dashboard(bundle.app, authorize=lambda: True)
    client = bundle.app.test_client()
    page = client.get("/_telemetry/compare?release=r1&baseline_release=r0")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "<strong>1</strong> route worse" in text
    assert 'class="bad"' in text
    same = client.get("/_telemetry/compare?release=r0&baseline_release=r0")
    assert "<strong>0</strong> routes worse" in same.get_data(as_text=True)
    earlier = client.get("/_telemetry/compare?baseline=28d").get_data(as_text=True)
    assert "28d before" in earlier
    bad = client.get("/_telemetry/compare?baseline=3y&baseline_release=x")
    assert bad.status_code == 200
    assert "Unknown baseline" in bad.get_data(as_text=True)


KILLED_FOLD = """
import datetime as dt
import sys

import sqlalchemy as sa

from flask_telemetry.reading import rollups

engine = sa.create_engine(sys.argv[1])
meta = sa.MetaData()
traces = sa.Table("telemetry_traces", meta, autoload_with=engine)
table = sa.Table(
    "telemetry_rollups", meta, sa.Column("histogram", sa.JSON), autoload_with=engine
)
rollups.rollup(engine, traces, table, since=dt.datetime.fromisoformat(sys.argv[2]))
"""


def test_a_killed_rollup_is_done_again_exactly(make_app: MakeApp) -> None:
    """A rollup killed (SIGKILL) after some of its days committed: the next
    one counts every row exactly once."""
    bundle = make_app(TELEMETRY_DELIVERY="sync", TELEMETRY_ROLLUPS=True)
    rng = random.Random(11)
    store(bundle, _rows(rng, 40_000, dt.timedelta(days=9)))
    with bundle.app.app_context():
        table = bundle.telemetry.rollup_model.__table__
    engine = engine_of(bundle)
    url = engine.url.render_as_string(hide_password=False)
    mark = sa.select(sa.func.count()).where(table.c.bucket_seconds == 0)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_FOLD,
            url,
            (NOW - dt.timedelta(days=10)).isoformat(),
        ]
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            with engine.connect() as conn:
                if conn.execute(mark).scalar_one():
                    break  # a day is committed: kill it in the middle
            time.sleep(0.005)
        child.kill()
        assert child.wait(10) == -signal.SIGKILL, "the fold ended before it was killed"
    finally:
        if child.poll() is None:
            child.kill()
    with bundle.app.app_context():
        half = bundle.telemetry.request_summary(since=dt.timedelta(days=10))
        assert sum(r.requests for r in half) == 40_000  # raw rows fill the rest
        bundle.telemetry.rollup()
        whole = bundle.telemetry.request_summary(since=dt.timedelta(days=10))
    assert sum(r.requests for r in whole) == 40_000
    _compare(whole, _raw(bundle, dt.timedelta(days=10)))
    with engine.connect() as conn:
        hours = conn.execute(
            sa.select(sa.func.sum(table.c.rows)).where(table.c.bucket_seconds == 3600)
        ).scalar_one()
    assert hours == 40_000


def test_database_figures_are_rolled_up(make_app: MakeApp) -> None:
    """The SQLAlchemy integration's db_count and db_ms: the same per-route
    figures from the rollups as from the raw rows."""
    bundle = make_app(TELEMETRY_DELIVERY="sync", TELEMETRY_ROLLUPS=True)
    rng = random.Random(13)
    rows = []
    for row in _rows(rng, 400, dt.timedelta(days=2)):
        meta = dict(row.metadata or {})
        if rng.random() < 0.8:  # some requests ran no instrumented engine
            meta["db_count"] = rng.randint(0, 40)
            meta["db_ms"] = round(meta["duration_ms"] * rng.random(), 3)
        rows.append(dataclasses.replace(row, metadata=meta))
    store(bundle, rows)
    with bundle.app.app_context():
        bundle.telemetry.rollup()
        rolled = bundle.telemetry.request_summary(since=dt.timedelta(days=3))
    raw = {r.route_name: r for r in _raw(bundle, dt.timedelta(days=3))}
    assert rolled
    for r in rolled:
        exact = raw[r.route_name]
        assert r.db_requests == exact.db_requests > 0
        assert r.mean_db_count == pytest.approx(exact.mean_db_count, rel=1e-9)
        assert r.mean_db_ms == pytest.approx(exact.mean_db_ms, rel=1e-9)
        assert r.db_share == pytest.approx(exact.db_share, rel=1e-9)
        assert r.p95_db_ms == pytest.approx(exact.p95_db_ms, rel=0.01)
