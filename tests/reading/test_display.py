"""Invisible characters in stored text show as escapes, on the dashboard's
pages and in the CLI (issue 21, §4): a bidi override or isolate cannot make
a route or a user agent read backwards."""

from __future__ import annotations

import datetime as dt
import re
import typing as t
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from conftest import Bundle
from flask_telemetry.reading.display import visible
from reading_data import NOW, engine_of, event, store

RLO, LRI, PDI = "\u202e", "\u2066", "\u2069"
ROUTE = f"shop.{RLO}yap"
AGENT = f"Mozilla/5.0 {LRI}lanigiro{PDI} {RLO}gpj.exe"
REQUEST_ID = f"bidi-{RLO}1"
#: What must never reach a page or a terminal as raw text.
HIDDEN = (RLO, LRI, PDI, "\u202a", "\u200f", "\x1b")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("shop.item", "shop.item"),
        ("caf\u00e9 \u65e5\u672c \U0001f680", "caf\u00e9 \u65e5\u672c \U0001f680"),
        (ROUTE, "shop.\\u202eyap"),
        (f"{LRI}a{PDI}", "\\u2066a\\u2069"),
        ("\u202a\u202b\u202c\u202d\u202e", "\\u202a\\u202b\\u202c\\u202d\\u202e"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),
        ("a\u200bb\u200fc\u061cd\ufeff", "a\\u200bb\\u200fc\\u061cd\\ufeff"),
        ("x\x1b[2Jy\rz\nw\tv", "x\\u001b[2Jy\\u000dz\\u000aw\\u0009v"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("\ud800", "\\ud800"),
        ("\u00a0nbsp", "\u00a0nbsp"),  # a space that shows as one
        (None, ""),
        (404, "404"),
    ],
)
def test_visible(text: t.Any, shown: str) -> None:
    assert visible(text) == shown


def test_visible_keeps_the_lines_it_is_told_to() -> None:
    assert visible('{\n  "k\u202e": 1\n}', lines=True) == '{\n  "k\\u202e": 1\n}'
    assert visible("a\nb\rc", lines=True) == "a\nb\\u000dc"


@pytest.fixture
def bidi(bundle: Bundle) -> Bundle:
    """A request whose route, user agent, request id, address, event type,
    severity-neighbouring texts and metadata hold bidi controls."""
    start = NOW - dt.timedelta(minutes=3)
    store(
        bundle,
        [
            event(
                event_type="cache_miss",
                request_id=REQUEST_ID,
                route_name=ROUTE,
                user_agent=AGENT,
                ip_address=f"203.0.113.9{RLO}",
                metadata={f"key{RLO}": f"{LRI}value{PDI}"},
                occurred_at=start + dt.timedelta(milliseconds=2),
            ),
            event(
                event_type="http_request_end",
                request_id=REQUEST_ID,
                route_name=ROUTE,
                user_agent=AGENT,
                metadata={
                    "method": f"GET{RLO}",
                    "status": 500,
                    "duration_ms": 12.0,
                    "exception": f"Key{RLO}Error",
                },
                severity="error",
                occurred_at=start + dt.timedelta(milliseconds=12),
            ),
        ],
    )
    # An event type and an actor type the writer refuses, stored by other
    # code: with plain SQL.
    engine = engine_of(bundle)
    at = start + dt.timedelta(milliseconds=3)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(bundle.traces).values(
                event_type=f"custom{RLO}evt",
                severity="info",
                actor_type=f"user{LRI}",
                request_id=REQUEST_ID,
                route_name=ROUTE,
                user_agent=AGENT,
                occurred_at=at
                if engine.dialect.name == "postgresql"
                else at.replace(tzinfo=None),
            )
        )
    return bundle


def _assert_shown(where: str, text: str) -> None:
    for char in HIDDEN:
        assert char not in text, (where, f"U+{ord(char):04X}")


def _assert_page_shown(where: str, page: str) -> None:
    """No hidden character in the page's text. Attribute values are left
    out: a filter's input keeps the value to send back as it was typed, and
    nothing in an attribute is displayed as the page's text."""
    text = re.sub(r'="[^"]*"', '=""', page)
    for char in HIDDEN:
        assert char not in text, (where, f"U+{ord(char):04X}")


def test_pages_show_bidi_controls_as_escapes(bidi: Bundle) -> None:
    bidi.telemetry.init_dashboard(bidi.app, authorize=lambda: True)
    client = bidi.client()
    route = quote(ROUTE)
    urls = [
        f"{base}{sep}window={window}"
        for window in ("1h", "24h", "7d")
        for base, sep in (
            ("/_telemetry/", "?"),
            ("/_telemetry/events", "?"),
            (f"/_telemetry/events?route={route}", "&"),
            (f"/_telemetry/route?name={route}", "&"),
            (f"/_telemetry/trace/{quote(REQUEST_ID)}", "?"),
        )
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        _assert_page_shown(url, page)
        if "/trace/" in url or "/events" in url:
            assert "shop.\\u202eyap" in page, url
            assert "bidi-\\u202e1" in page, url
            assert "custom\\u202eevt" in page, url
            assert "key\\u202e" in page, url
            assert "\\u2066value\\u2069" in page, url
        if "/events" in url:
            assert "user\\u2066" in page, url  # the actor
        if "/trace/" in url:
            assert "\\u2066lanigiro\\u2069 \\u202egpj.exe" in page  # user agent
            assert "203.0.113.9\\u202e" in page  # client address
        if "/route?" in url:
            assert "<code>shop.\\u202eyap</code>" in page
            assert "Key\\u202eError" in page
            assert "GET\\u202e" in page
        if url.startswith("/_telemetry/?"):
            assert "shop.\\u202eyap" in page
            assert "custom\\u202eevt" in page


def test_cli_shows_bidi_controls_as_escapes(bidi: Bundle) -> None:
    runner = bidi.runner()
    outputs = {
        "report": ["report"],
        "trace": ["trace", REQUEST_ID],
        "tail": ["tail"],
        "report --json": ["report", "--json"],
        "trace --json": ["trace", REQUEST_ID, "--json"],
        "tail --json": ["tail", "--json"],
    }
    for name, args in outputs.items():
        result = runner.invoke(args=["telemetry", *args])
        assert result.exit_code == 0, (name, result.output)
        _assert_shown(name, result.output)
        assert "shop.\\u202eyap" in result.output, name
        if name != "report --json":
            assert "custom\\u202eevt" in result.output, name
    trace = runner.invoke(args=["telemetry", "trace", REQUEST_ID]).output
    assert "key\\u202e=" in trace
    assert "\\u2066value\\u2069" in trace
    assert "user\\u2066" in trace
    tail = runner.invoke(args=["telemetry", "tail"]).output
    assert "bidi-\\u202e1" in tail
