"""The dashboard in headless Chromium, served on a real local port.

Chromium is Debian's ``/usr/bin/chromium`` (``apt-get install chromium``),
driven by Playwright without its own browser downloads. When
``TELEMETRY_TEST_CHROMIUM`` is set (``.ci/run`` sets it) the browser must
start or the tests fail; without it they run when ``/usr/bin/chromium`` is
there and are skipped, with the reason shown, when it is not.
"""

from __future__ import annotations

import datetime as dt
import itertools
import typing as t
import urllib.error
import urllib.request

import pytest
from browser_support import browser, serve  # noqa: F401
from flask import Blueprint, Flask, request

from conftest import Bundle, MakeApp
from example_app.dashboard_demo import fill
from flask_telemetry import EventType

if t.TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

XSS = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>"
UA_XSS = "<script>window.__pwned_ua = 1</script>"

pytestmark = pytest.mark.slow


@pytest.fixture
def backend() -> str:
    """The browser tests run on SQLite; the pages' queries run on every
    database in test_dashboard.py."""
    return "sqlite"


@pytest.fixture
def page(browser: Browser) -> t.Iterator[Page]:  # noqa: F811
    context = browser.new_context()
    yield context.new_page()
    context.close()


def shop(bundle: Bundle, *, authorize: t.Any = None) -> Flask:
    """``bundle``'s app with a route that stores markup in its metadata."""
    app, telemetry = bundle.app, bundle.telemetry
    bp = Blueprint("shop", __name__)

    @bp.get("/items/<int:item>")
    def item(item: int) -> str:
        telemetry.record(EventType.CACHE_MISS, metadata={"item": item, "note": XSS})
        return "ok"

    app.register_blueprint(bp)
    telemetry.init_dashboard(app, authorize=authorize)
    return app


@pytest.fixture
def site(bundle: Bundle) -> t.Iterator[str]:
    """The shop with a dashboard for requests carrying ``?key=ok`` or its
    cookie, filled with two hours of demo traffic and one hostile request."""

    def authorize() -> bool:
        return request.cookies.get("dashboard") == "ok"

    app = shop(bundle, authorize=authorize)
    with app.app_context(), bundle.db.engines[None].begin() as conn:
        fill(conn, bundle.traces, now=dt.datetime.now(dt.UTC), hours=2, requests=1500)
    yield from serve(app)


def _allow(page: Page, base: str) -> None:
    page.context.add_cookies([{"name": "dashboard", "value": "ok", "url": base}])


def test_overview_shows_charts_and_a_sortable_table(page: Page, site: str) -> None:
    _allow(page, site)
    response = page.goto(f"{site}/_telemetry/?window=24h")
    assert response is not None
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.locator("#charts svg.chart").count() == 3
    assert page.locator("#charts svg.chart polyline").count() >= 5
    rows = page.locator("table.routes tbody tr")
    assert rows.count() >= 8
    # The stylesheet loaded under the CSP: the table has its background.
    assert (
        page.locator("table.routes").evaluate("t => getComputedStyle(t).borderCollapse")
        == "collapse"
    )

    page.get_by_role("link", name="Requests", exact=True).click()
    page.wait_for_url("**sort=requests**")
    counts = [
        int(text.replace(",", ""))
        for text in page.locator(
            "table.routes tbody tr td:nth-child(2)"
        ).all_inner_texts()
    ]
    assert counts == sorted(counts, reverse=True)
    page.get_by_role("link", name="Requests ▼").click()
    page.wait_for_url("**order=asc**")
    counts = [
        int(text.replace(",", ""))
        for text in page.locator(
            "table.routes tbody tr td:nth-child(2)"
        ).all_inner_texts()
    ]
    assert counts[:-1] == sorted(counts[:-1])  # the unmatched route last


def _inside(inner: t.Any, outer: t.Any) -> bool:
    return bool(
        inner["x"] >= outer["x"] - 0.5
        and inner["y"] >= outer["y"] - 0.5
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 0.5
    )


@pytest.mark.parametrize("window", ["1h", "24h", "7d"])
def test_charts_read_clearly(page: Page, site: str, window: str) -> None:
    _allow(page, site)
    for path, titles in (
        ("/_telemetry/", ["Requests per minute", "Error rate", "Latency"]),
        (
            "/_telemetry/route?name=checkout.pay",
            ["Requests by duration", "Requests by status", "Requests per minute"],
        ),
    ):
        page.goto(f"{site}{path}{'&' if '?' in path else '?'}window={window}")
        svgs = page.locator("#charts svg.chart")
        assert svgs.count() >= len(titles)
        for i in range(svgs.count()):
            svg = svgs.nth(i)
            frame = svg.bounding_box()
            assert frame is not None
            title = svg.locator("text.title")
            if i < len(titles):
                assert (title.text_content() or "").startswith(titles[i])
            units = svg.locator("text.unit").all_text_contents()
            assert units, i  # a unit on the y axis at least
            assert all(units), i
            texts = svg.locator("text.title, text.unit, text.tick, text.legend")
            boxes = [texts.nth(j).bounding_box() for j in range(texts.count())]
            assert all(b is not None and _inside(b, frame) for b in boxes), (path, i)
            # The x axis' labels (the lowest row of ticks) do not overlap.
            ticks = [
                b
                for b in (
                    svg.locator("text.tick").nth(j).bounding_box()
                    for j in range(svg.locator("text.tick").count())
                )
                if b is not None
            ]
            low = max(b["y"] for b in ticks)
            row = sorted(
                (b for b in ticks if abs(b["y"] - low) < 1), key=lambda b: b["x"]
            )
            for left, right in itertools.pairwise(row):
                assert left["x"] + left["width"] <= right["x"], (path, i)


def test_request_ends_list_status_and_duration(page: Page, site: str) -> None:
    _allow(page, site)
    page.goto(f"{site}/_telemetry/events?window=24h&event_type=http_request_end")
    headers = page.locator("table.events thead th").all_inner_texts()
    status_at = headers.index("Status") + 1
    assert headers[status_at] == "ms"
    statuses = page.locator(
        f"table.events tbody td:nth-child({status_at})"
    ).all_inner_texts()
    durations = page.locator(
        f"table.events tbody td:nth-child({status_at + 1})"
    ).all_inner_texts()
    assert statuses
    assert all(s.isdigit() and 100 <= int(s) <= 599 for s in statuses)
    assert all(float(d.replace(",", "")) >= 0 for d in durations)
    # The table fits the page: no column is cut off at 1280 px.
    page.set_viewport_size({"width": 1280, "height": 900})
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 1280


def test_a_filter_narrows_the_list(page: Page, site: str) -> None:
    _allow(page, site)
    page.goto(f"{site}/_telemetry/events?window=24h")
    events = page.locator("table.events tbody tr td:nth-child(3)")
    before = events.all_inner_texts()
    assert len(set(before)) > 1
    page.select_option("select[name=event_type]", "auth_login_failure")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**event_type=auth_login_failure**")
    after = events.all_inner_texts()
    assert after
    assert set(after) == {"auth_login_failure"}
    assert len(after) < len(before)
    # The window survives the filter, and the filter the window.
    assert "window=24h" in page.url
    page.get_by_role("link", name="1h", exact=True).click()
    page.wait_for_url("**window=1h**")
    assert "event_type=auth_login_failure" in page.url


def test_a_link_leads_to_the_trace(page: Page, site: str) -> None:
    _allow(page, site)
    page.goto(f"{site}/_telemetry/?window=24h")
    page.get_by_role("link", name="checkout.pay", exact=True).click()
    page.wait_for_url("**/route?**")
    assert page.locator("#charts svg.chart").count() == 5
    link = page.locator("table.slowest a.trace").first
    request_id = link.inner_text()
    link.click()
    page.wait_for_url(f"**/trace/{request_id}**")
    assert request_id in page.locator("h1").inner_text()
    assert page.locator("figure.timeline svg rect").count() >= 1
    assert "http_request_end" in page.locator("table.trace").inner_text()


def test_stored_markup_does_not_run(page: Page, site: str) -> None:
    req = urllib.request.Request(
        f"{site}/items/7", headers={"User-Agent": UA_XSS, "X-Request-ID": "xss-1"}
    )
    with urllib.request.urlopen(req) as response:
        assert response.status == 200
    _allow(page, site)
    dialogs: list[str] = []

    def on_dialog(dialog: t.Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    for path in ("/_telemetry/trace/xss-1", "/_telemetry/events?request_id=xss-1"):
        page.goto(site + path)
        assert page.evaluate("() => [window.__pwned, window.__pwned_ua]") == [
            None,
            None,
        ]
        assert page.locator("script").count() == 0
        assert page.locator("img").count() == 0
        shown = page.locator("pre.metadata").all_text_contents()
        assert any(XSS in text for text in shown)
    page.goto(site + "/_telemetry/trace/xss-1")
    assert UA_XSS in page.locator("p.ua code").inner_text()
    assert dialogs == []


def test_refused_or_not_enabled_is_404(page: Page, make_app: MakeApp) -> None:
    refusing = shop(make_app(), authorize=lambda: False)
    closed = shop(make_app())  # no authorize: nothing registered
    for app in (refusing, closed):
        for base in serve(app):
            for path in ("/_telemetry/", "/_telemetry/events"):
                response = page.goto(base + path)
                assert response is not None
                assert response.status == 404
                assert "content-security-policy" not in response.headers
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{base}/_telemetry/static/dashboard.css")
            assert refused.value.code == 404
            refused.value.close()
