"""The dashboard through the test client, on every configured database."""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import pathlib
import re
import time
import typing as t

import pytest
from flask import Blueprint, Flask, request

from conftest import Bundle, MakeApp
from flask_telemetry import EventType, Telemetry
from flask_telemetry.dashboard import budget, charts
from flask_telemetry.dashboard.blueprint import CONTENT_SECURITY_POLICY
from flask_telemetry.dashboard.window import MAX_SPAN, parse_window
from flask_telemetry.reading import series

PAGES = ["/_telemetry/", "/_telemetry/events", "/_telemetry/route?name=shop.item"]
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2">'


def _shop(bundle: Bundle, *, authorize: t.Any = lambda: True, **kw: t.Any) -> Flask:
    """Add a route or two to ``bundle``'s app and the dashboard."""
    app, telemetry = bundle.app, bundle.telemetry

    shop = Blueprint("shop", __name__)

    @shop.get("/items/<int:item>")
    def item(item: int) -> tuple[str, int]:
        telemetry.record(EventType.CACHE_MISS, metadata={"item": item, "note": XSS})
        return "ok", 500 if item == 13 else 200

    app.register_blueprint(shop)
    telemetry.init_dashboard(app, authorize=authorize, **kw)
    return app


@pytest.fixture
def shop(bundle: Bundle) -> Flask:
    app = _shop(bundle)
    client = app.test_client()
    for item in (1, 2, 13):
        client.get(f"/items/{item}", headers={"User-Agent": XSS})
    client.get("/nowhere")
    bundle.telemetry.flush(10)
    return app


def test_pages_answer_with_the_security_headers(shop: Flask) -> None:
    client = shop.test_client()
    for url in [*PAGES, "/_telemetry/static/dashboard.css"]:
        response = client.get(url)
        response.close()
        assert response.status_code == 200, url
        csp = response.headers["Content-Security-Policy"]
        assert csp == CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in csp
        assert "script-src 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = client.get("/_telemetry/").get_data(as_text=True)
    assert "<script" not in page
    assert " style=" not in page
    assert page.count('<svg class="chart"') == 3
    assert "shop.item" in page
    assert "http_request_end" in page


def test_stored_markup_shows_as_text(shop: Flask, bundle: Bundle) -> None:
    [row] = [r for r in bundle.rows() if r.event_type == "cache_miss"][:1]
    client = shop.test_client()
    for url in (f"/_telemetry/trace/{row.request_id}", "/_telemetry/events"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>window" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    trace = client.get(f"/_telemetry/trace/{row.request_id}").get_data(as_text=True)
    assert "User agent: <code>&lt;script&gt;" in trace
    # Metadata is indented JSON text.
    assert "\n  &#34;item&#34;: 1," in trace or '\n  "item": 1,' in trace


def test_dashboard_requests_are_not_recorded(shop: Flask, bundle: Bundle) -> None:
    before = len(bundle.rows())
    client = shop.test_client()
    for url in PAGES:
        assert client.get(url).status_code == 200
    assert client.get("/items/5").status_code == 200
    rows = bundle.rows()[before:]
    assert [r.route_name for r in rows] == ["shop.item", "shop.item"]


def test_dashboard_requests_are_not_recorded_with_nothing_else_excluded(
    make_app: MakeApp,
) -> None:
    # The request hooks skip the exclusion check while nothing is excluded:
    # enabling the dashboard must turn it back on.
    bundle = make_app(TELEMETRY_EXCLUDE=[])
    app = _shop(bundle)
    client = app.test_client()
    assert client.get("/_telemetry/").status_code == 200
    assert client.get("/items/5").status_code == 200
    bundle.telemetry.flush(10)
    assert [r.route_name for r in bundle.rows()] == ["shop.item", "shop.item"]


def test_without_authorize_nothing_is_registered(bundle: Bundle) -> None:
    bundle.telemetry.init_dashboard(bundle.app)
    assert not any(
        r.rule.startswith("/_telemetry") for r in bundle.app.url_map.iter_rules()
    )
    assert bundle.client().get("/_telemetry/").status_code == 404


@pytest.mark.parametrize(
    "authorize",
    [lambda: False, lambda: None, lambda: 1 / 0],
    ids=["false", "none", "raises"],
)
def test_a_refused_request_is_a_plain_404(bundle: Bundle, authorize: t.Any) -> None:
    app = _shop(bundle, authorize=authorize)
    client = app.test_client()
    missing = client.get("/no-such-page")
    for url in [*PAGES, "/_telemetry/trace/x", "/_telemetry/static/dashboard.css"]:
        for method in ("GET", "POST", "DELETE"):
            response = client.open(url, method=method)
            response.close()
            assert response.status_code == 404, (method, url)
            assert response.data == missing.data
            assert "Content-Security-Policy" not in response.headers


def test_authorize_sees_the_request(bundle: Bundle) -> None:
    app = _shop(bundle, authorize=lambda: request.headers.get("X-Admin") == "yes")
    client = app.test_client()
    assert client.get("/_telemetry/").status_code == 404
    assert client.get("/_telemetry/", headers={"X-Admin": "yes"}).status_code == 200


def test_only_get_and_head(shop: Flask) -> None:
    client = shop.test_client()
    assert client.head("/_telemetry/events").status_code == 200
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = client.open("/_telemetry/events", method=method)
        assert response.status_code == 405
        assert response.headers["Allow"] == "GET, HEAD"


def test_url_prefix_and_init_order(make_app: MakeApp) -> None:
    bundle = make_app()
    app = _shop(bundle, url_prefix="/ops/telemetry")
    assert app.test_client().get("/ops/telemetry/").status_code == 200
    assert app.test_client().get("/_telemetry/").status_code == 404
    with pytest.raises(RuntimeError, match="init_app"):
        Telemetry().init_dashboard(Flask("other"), authorize=lambda: True)
    with pytest.raises(ValueError, match="authorize must be a callable"):
        bundle.telemetry.init_dashboard(bundle.app, authorize=True)  # type: ignore[arg-type]


def test_route_table_sorts_by_query_parameter(shop: Flask) -> None:
    client = shop.test_client()

    def order(query: str) -> list[str]:
        page = client.get(f"/_telemetry/?{query}").get_data(as_text=True)
        table = page.split('<table class="routes', 1)[1].split("</table>", 1)[0]
        name = r'<td class="name"><a href="[^"]*">(?:<em>)?([\w.()]+)'
        return re.findall(name, table)

    by_requests = order("sort=requests&order=desc")
    assert by_requests[0] == "shop.item"
    assert order("sort=requests&order=asc")[-1] == "shop.item"
    assert order("sort=route&order=asc") == ["shop.item", "(unmatched)"]
    assert order("sort=bogus") == order("")


def test_events_filters_and_paging(shop: Flask, bundle: Bundle) -> None:
    client = shop.test_client()

    def ids(query: str) -> list[int]:
        page = client.get(f"/_telemetry/events?{query}").get_data(as_text=True)
        return [
            int(i) for i in re.findall(r"<tr class=\"sev-\w+\">\s*<td>(\d+)</td>", page)
        ]

    every = ids("")
    assert every == sorted(every, reverse=True)
    assert len(every) == len(bundle.rows())
    misses = ids("event_type=cache_miss")
    assert 0 < len(misses) < len(every)
    assert ids("min_severity=error") == [
        r.id for r in reversed(bundle.rows()) if r.severity in ("error", "critical")
    ]
    assert ids("severity=info") == [
        r.id for r in reversed(bundle.rows()) if r.severity == "info"
    ]
    assert ids(f"before_id={every[1]}") == every[2:]
    assert ids("route=shop.*&event_type=http_request_end") == [
        r.id
        for r in reversed(bundle.rows())
        if r.route_name == "shop.item" and r.event_type == "http_request_end"
    ]
    page = client.get("/_telemetry/events?actor_id=abc&min_severity=loud")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "actor_id must be a whole number" in text
    assert "Unknown severity" in text
    assert "Unknown severity &#39;louder&#39;" in client.get(
        "/_telemetry/events?severity=louder"
    ).get_data(as_text=True)


def test_event_count_links_lead_to_that_severity_only(shop: Flask) -> None:
    page = shop.test_client().get("/_telemetry/").get_data(as_text=True)
    links = re.findall(r'href="[^"]*events\?[^"]*"', page)
    with_severity = [link for link in links if "severity=" in link]
    assert with_severity
    assert all("min_severity" not in link for link in with_severity)
    assert any("event_type=cache_miss&amp;severity=info" in x for x in with_severity)


def test_trace_and_route_pages(shop: Flask, bundle: Bundle) -> None:
    client = shop.test_client()
    ends = [r for r in bundle.rows() if r.event_type == "http_request_end"]
    failed = next(r for r in ends if r.metadata["status"] == 500)
    page = client.get("/_telemetry/route?name=shop.item").get_data(as_text=True)
    assert f"/_telemetry/trace/{failed.request_id}" in page
    assert "Slowest requests" in page
    assert "Status breakdown" in page
    trace = client.get(f"/_telemetry/trace/{failed.request_id}")
    assert trace.status_code == 200
    assert trace.get_data(as_text=True).count('<tr class="sev-') == 2
    assert client.get("/_telemetry/trace/no-such-id").status_code == 404
    unmatched = client.get("/_telemetry/route?unmatched=1").get_data(as_text=True)
    assert "Requests no route matched" in unmatched
    assert ">404<" in unmatched
    assert client.get("/_telemetry/route").status_code == 404


def test_every_page_takes_every_window(shop: Flask) -> None:
    client = shop.test_client()
    windows = ["window=1h", "window=24h", "window=7d"]
    windows.append("window=custom&since=2020-01-01T00:00&until=2020-01-02T00:00")
    windows.append("window=custom&since=nonsense")
    for url in PAGES:
        for query in windows:
            sep = "&" if "?" in url else "?"
            response = client.get(f"{url}{sep}{query}")
            assert response.status_code == 200, (url, query)
    page = client.get("/_telemetry/?window=custom&since=nonsense").get_data(
        as_text=True
    )
    assert "since must be a date and time in ISO 8601" in page


def test_parse_window() -> None:
    now = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)
    assert parse_window({}, now=now).since == now - dt.timedelta(hours=1)
    assert parse_window({"window": "7d"}, now=now).since == now - dt.timedelta(days=7)
    custom = parse_window(
        {
            "window": "custom",
            "since": "2026-01-30T10:00",
            "until": "2026-01-30T12:00+01:00",
        },
        now=now,
    )
    assert custom.since == dt.datetime(2026, 1, 30, 10, tzinfo=dt.UTC)
    assert custom.until == dt.datetime(2026, 1, 30, 11, tzinfo=dt.UTC)
    assert custom.error is None
    assert custom.args() == {
        "window": "custom",
        "since": "2026-01-30T10:00",
        "until": "2026-01-30T11:00",
    }
    too_long = parse_window(
        {"window": "custom", "since": (now - MAX_SPAN * 2).isoformat()}, now=now
    )
    assert too_long.name == "1h"
    assert too_long.error
    assert "31 days" in too_long.error
    assert parse_window({"window": "3y"}, now=now).error
    backwards = {"window": "custom", "since": "2026-01-30", "until": "2026-01-29"}
    assert "must end after" in (parse_window(backwards, now=now).error or "")


def test_charts_escape_their_text() -> None:
    times = [dt.datetime(2026, 1, 1, h, tzinfo=dt.UTC) for h in range(3)]
    svg = charts.line_chart(
        times,
        [charts.Line(label="<b>x</b>", css='a"b', values=[1.0, None, 3.0])],
        title="<t>",
    )
    assert "<b>" not in svg
    assert "&lt;b&gt;" in svg
    assert 'a"b' not in svg
    bars = charts.bar_chart([charts.Bar(label="<i>", value=2)], title="t")
    assert "<i>" not in bars
    line = charts.timeline(
        [charts.Span(label="<s>", start_ms=0, length_ms=5)], title="t"
    )
    assert "<s>" not in line
    assert "&lt;s&gt;" in line
    assert "<polyline" not in charts.line_chart([], [], title="empty")


TRAFFIC_CHARTS = [
    ("Requests per minute", "req/min"),
    ("Error rate (status ≥ 500 or an exception)", "%"),
    ("Latency percentiles (log scale, within about 2.5%)", "ms"),
]
ROUTE_CHARTS = [
    ("Requests by duration", "requests"),
    ("Requests by status", "requests"),
]
#: A chart's y axis' tick labels, right-aligned next to the plot.
Y_TICK = re.compile(r'<text class="tick" x="50" y="[\d.]+" text-anchor="end">([^<]*)<')


def test_charts_show_titles_units_and_round_ticks(shop: Flask) -> None:
    client = shop.test_client()
    for url, expected in [
        ("/_telemetry/?window=24h", TRAFFIC_CHARTS),
        ("/_telemetry/route?name=shop.item", ROUTE_CHARTS + TRAFFIC_CHARTS),
        ("/_telemetry/route?unmatched=1&window=7d", ROUTE_CHARTS + TRAFFIC_CHARTS),
    ]:
        page = client.get(url).get_data(as_text=True)
        svgs = re.findall(r'<svg class="chart".*?</svg>', page, re.S)
        assert len(svgs) == len(expected), url
        for svg, (title, unit) in zip(svgs, expected, strict=True):
            assert re.search(rf'<text class="title"[^>]*>{re.escape(title)}<', svg)
            units = re.findall(r'<text class="unit"[^>]*>([^<]*)<', svg)
            assert unit in units, (url, title, units)
            assert len(units) == 2, units  # the y axis' and the x axis'
            labels = Y_TICK.findall(svg)
            assert len(labels) >= 2
            assert len(set(labels)) == len(labels), (url, title, labels)
            if unit == "requests":
                assert all(label.replace(",", "").isdigit() for label in labels)
    # Requests that matched no route had no error: a flat axis from 0 to 1 %.
    page = client.get("/_telemetry/route?unmatched=1").get_data(as_text=True)
    rate = re.search(r'aria-label="Error rate.*?</svg>', page, re.S)
    assert rate is not None
    assert Y_TICK.findall(rate.group()) == ["0", "1"]
    assert '<text class="unit" x="50" y="34" text-anchor="end">%<' in rate.group()


def _event_row(page: str, event_id: int) -> str:
    row = rf'<tr class="sev-\w+">\s*<td>{event_id}</td>(.*?)</tr>'
    found = re.search(row, page, re.S)
    assert found is not None, event_id
    return found.group(1)


def test_request_ends_show_status_and_duration(shop: Flask, bundle: Bundle) -> None:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    odd = [
        {"status": "<script>", "duration_ms": 1e308},
        {"status": True, "duration_ms": "3"},
        {"status": 200.5, "duration_ms": -5},
        {"status": 10**30, "duration_ms": [3]},
    ]
    _insert(
        bundle,
        [{**_end(when, 1.0), "metadata": metadata} for metadata in odd]
        + [{**_end(when, 1.0), "metadata": ["not", "an", "object"]}],
    )
    client = shop.test_client()
    page = client.get("/_telemetry/events").get_data(as_text=True)
    header = page.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert '<th>Event</th><th class="num">Status</th><th class="num"' in header
    assert ">ms</th>" in header
    rows = bundle.rows()
    ends = [r for r in rows if r.event_type == "http_request_end"]
    good = [r for r in ends if isinstance(r.metadata, dict) and r.metadata not in odd]
    assert {r.metadata["status"] for r in good} == {200, 404, 500}
    for row in good:
        cells = (
            f'<td class="num">{row.metadata["status"]}</td>'
            f'<td class="num">{row.metadata["duration_ms"]:,.1f}</td>'
        )
        assert cells in _event_row(page, row.id)
    empty = '<td class="num"></td><td class="num"></td>'
    for row in rows:
        if row not in good:
            assert empty in _event_row(page, row.id), row.metadata
    failed = next(r for r in good if r.metadata["status"] == 500)
    trace = client.get(f"/_telemetry/trace/{failed.request_id}").get_data(as_text=True)
    assert 'Status</th><th class="num">Duration ms</th>' in trace
    duration = failed.metadata["duration_ms"]
    assert f'<td class="num">500</td><td class="num">{duration:,.1f}<' in trace
    assert trace.count(empty) == 1  # the cache miss


# -- series ------------------------------------------------------------------


def _insert(bundle: Bundle, rows: list[dict[str, t.Any]]) -> None:
    with bundle.app.app_context():
        engine = bundle.db.engines[None]
        postgres = engine.dialect.name == "postgresql"
        for row in rows:
            if not postgres:
                row["occurred_at"] = row["occurred_at"].replace(tzinfo=None)
        with engine.begin() as conn:
            conn.execute(bundle.traces.insert(), rows)


def _end(
    when: dt.datetime, ms: float, status: int = 200, **meta: t.Any
) -> dict[str, t.Any]:
    return {
        "actor_type": "anonymous",
        "event_type": "http_request_end",
        "severity": "info",
        "route_name": meta.pop("route", "r"),
        "request_id": meta.pop("request_id", None),
        "metadata": {"method": "GET", "status": status, "duration_ms": ms, **meta},
        "occurred_at": when,
    }


def test_traffic_counts_errors_and_weights(bundle: Bundle) -> None:
    start = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    rows = [_end(start + dt.timedelta(seconds=5 + i), 10.0 + i) for i in range(40)]
    rows.append(_end(start + dt.timedelta(seconds=70), 50.0, 503))
    rows.append(_end(start + dt.timedelta(seconds=75), 50.0, 200, exception="KeyError"))
    rows.append(_end(start + dt.timedelta(seconds=80), 5.0, 200, sample_rate=0.25))
    rows.append(_end(start + dt.timedelta(seconds=130), 5.0, route="other"))
    rows.append(_end(start + dt.timedelta(minutes=10), 5.0))  # outside the window
    rows.append({**_end(start, 1.0), "event_type": "cache_miss"})
    _insert(bundle, rows)
    with bundle.app.app_context(), bundle.db.engines[None].connect() as conn:
        buckets = series.traffic(
            conn,
            bundle.traces,
            since=start,
            until=start + dt.timedelta(minutes=3),
            buckets=3,
            route="r",
        )
    assert [b.start for b in buckets] == [
        start + dt.timedelta(minutes=m) for m in range(3)
    ]
    assert [(b.requests, b.errors) for b in buckets] == [(40, 0), (6, 2), (0, 0)]
    assert buckets[0].per_minute == 40
    # Linear percentiles of 10, 11, ..., 49, to the histogram's precision.
    assert buckets[0].p50_ms == pytest.approx(29.5, rel=0.03)
    assert buckets[0].p95_ms == pytest.approx(10 + 0.95 * 39, rel=0.03)
    assert buckets[0].p99_ms == pytest.approx(10 + 0.99 * 39, rel=0.03)
    assert buckets[2].p50_ms is None
    assert buckets[2].error_rate == 0.0
    # The sampled row stands for 4 requests.
    assert buckets[1].p50_ms == pytest.approx(5.0, rel=0.03)


def test_histogram_statuses_and_slowest(bundle: Bundle) -> None:
    start = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    rows = [
        _end(start + dt.timedelta(seconds=i), ms, status, request_id=f"q{i}")
        for i, (ms, status) in enumerate(
            [(1.0, 200), (1.5, 200), (12.0, 404), (120.0, 200), (1200.0, 500)]
        )
    ]
    rows.append(_end(start, 9999.0, route=None))
    _insert(bundle, rows)
    window: dict[str, t.Any] = {"since": start, "until": start + dt.timedelta(hours=1)}
    with bundle.app.app_context(), bundle.db.engines[None].connect() as conn:
        bins = series.latency_histogram(conn, bundle.traces, route="r", **window)
        statuses = series.status_breakdown(conn, bundle.traces, route="r", **window)
        slow = series.slowest(conn, bundle.traces, route="r", limit=2, **window)
        unmatched = series.slowest(conn, bundle.traces, unmatched=True, **window)
    assert sum(b.requests for b in bins) == 5
    assert bins[0].low_ms <= 1.0 < bins[0].high_ms
    assert bins[-1].low_ms <= 1200.0 < bins[-1].high_ms
    assert all(
        a.high_ms == pytest.approx(b.low_ms) for a, b in itertools.pairwise(bins)
    )
    assert [(s.status, s.requests) for s in statuses] == [(200, 3), (404, 1), (500, 1)]
    assert [(s.request_id, s.duration_ms, s.status) for s in slow] == [
        ("q4", 1200.0, 500),
        ("q3", 120.0, 200),
    ]
    assert slow[0].occurred_at == start + dt.timedelta(seconds=4)
    assert [s.duration_ms for s in unmatched] == [9999.0]


def test_bucket_width() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for span, width in [
        (dt.timedelta(hours=1), 60),
        (dt.timedelta(hours=24), 1800),
        (dt.timedelta(days=7), 10800),
        (dt.timedelta(days=31), 86400),
        (dt.timedelta(days=400), 7 * 86400),
    ]:
        assert series.bucket_seconds(start, start + span, buckets=60) == width


# -- layering ------------------------------------------------------------------

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "flask_telemetry"


def test_dashboard_depends_on_reading_only() -> None:
    for path in sorted((PACKAGE / "dashboard").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                # The read API, the stored vocabulary, and the app's state it
                # reads through (as the CLI does); never the package root,
                # which imports the extension that imports the dashboard.
                allowed = (None, "reading", "storage.vocabulary", "_wiring")
                assert node.level == 1 or node.module in allowed, (
                    f"{path.name} imports {'.' * node.level}{node.module}"
                )
                if node.level > 1 and node.module is None:
                    assert [a.name for a in node.names] == ["reading"], path.name
    for path in sorted((PACKAGE / "reading").glob("series.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [node.module]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                assert not any((n or "").startswith("flask") for n in names)


def test_reads_through_the_telemetry_bind(
    make_app: MakeApp, db_url: str, tmp_path: pathlib.Path
) -> None:
    bundle = make_app(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'default.db'}",
        SQLALCHEMY_BINDS={"telemetry": db_url},
        TELEMETRY_BIND_KEY="telemetry",
    )
    app = _shop(bundle)
    client = app.test_client()
    client.get("/items/1", headers={"X-Request-ID": "on-the-bind"})
    bundle.telemetry.flush(10)
    assert client.get("/_telemetry/trace/on-the-bind").status_code == 200
    page = client.get("/_telemetry/").get_data(as_text=True)
    assert ">shop.item</a>" in page


SLOW_QUERIES = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
    "SELECT count(*) FROM n",
    "postgresql": "SELECT pg_sleep(5)",
    "mariadb": "SELECT count(*) FROM information_schema.columns a, "
    "information_schema.columns b, information_schema.columns c",
}


def test_a_query_past_its_time_is_stopped(bundle: Bundle, backend: str) -> None:
    with bundle.app.app_context(), bundle.db.engines[None].connect() as conn:
        started = time.monotonic()
        with pytest.raises(budget.TooSlow), budget.limited(conn, 0.3):
            conn.exec_driver_sql(SLOW_QUERIES[backend]).all()
        assert time.monotonic() - started < 3
        conn.rollback()
        # The connection goes on without the limit.
        with budget.limited(conn, 5):
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        with pytest.raises(budget.TooSlow), budget.limited(conn, 0):
            pytest.fail("a spent budget runs nothing")
        if backend == "mariadb":
            assert conn.exec_driver_sql(
                "SELECT @@SESSION.max_statement_time"
            ).scalar() == (
                conn.exec_driver_sql("SELECT @@GLOBAL.max_statement_time").scalar()
            )


def test_a_page_past_its_time_says_so(
    shop: Flask, bundle: Bundle, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow(conn: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        return conn.exec_driver_sql(SLOW_QUERIES[backend]).all()

    monkeypatch.setattr(budget, "PAGE_SECONDS", 0.3)
    monkeypatch.setattr(series, "traffic", slow)
    response = shop.test_client().get("/_telemetry/?window=24h")
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "This window is too large for a page" in page
    assert 'aria-current="true">24h<' in page
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
