"""Every URL parameter of every dashboard page, fuzzed from the pages'
declarations (``dashboard.params.PAGES``), on every configured database: a
bad value gets the page's message or a 404, never a 5xx."""

from __future__ import annotations

import datetime as dt
import typing as t
import urllib.parse

import pytest
from flask import Flask

from conftest import Bundle
from flask_telemetry import reading
from flask_telemetry.dashboard import params

HOSTILE = [
    "-1",
    "9223372036854775808",
    "-9223372036854775809",
    "1" * 400,
    "NaN",
    "inf",
    "",
    "\x00",
    "a\x00b",
    "' OR 1=1 --",
    "%_/\\*?",
    "\U0001f600",
    "\u202eevil\u2066x\u2069",
    "x" * 3000,
    "0001-01-01T00:00+01:00",
    "9999-12-31T23:59-01:00",
]
HOSTILE_TEXT = ["<script>x</script>", "\u202eabc", "r" * 255, "a/b%_"]


def _store(bundle: Bundle) -> str:
    """Rows to show, hostile texts included; the request id of one."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    rows: list[dict[str, t.Any]] = []
    for i, text in enumerate(["shop.item", *HOSTILE_TEXT]):
        rows.append(
            {
                "actor_type": "user",
                "actor_id": 2**63 - 1 if i % 2 else -(2**63),
                "event_type": "http_request_end",
                "severity": "info",
                "route_name": text,
                "request_id": f"req-{i}" if i else "req-0",
                "user_agent": text,
                "metadata": {"method": "GET", "status": 200, "duration_ms": 3.0 + i},
                "occurred_at": now - dt.timedelta(seconds=i),
            }
        )
    with bundle.app.app_context():
        engine = bundle.db.engines[None]
        if engine.dialect.name != "postgresql":
            for row in rows:
                row["occurred_at"] = row["occurred_at"].replace(tzinfo=None)
        with engine.begin() as conn:
            conn.execute(bundle.traces.insert(), rows)
    return "req-0"


def _url(page: params.Page, path_values: dict[str, str], args: dict[str, str]) -> str:
    rule = page.rule
    for name in page.path_params:
        start = rule.index("<")
        end = rule.index(">", start)
        rule = (
            rule[:start]
            + urllib.parse.quote(path_values[name], safe="")
            + rule[end + 1 :]
        )
    query = urllib.parse.urlencode(args)
    return f"/_telemetry{rule}" + (f"?{query}" if query else "")


def test_every_parameter_of_every_page(bundle: Bundle) -> None:
    app: Flask = bundle.app
    request_id = _store(bundle)
    bundle.telemetry.init_dashboard(app, authorize=lambda: True)
    client = app.test_client()
    tried = 0
    for name, page in params.PAGES.items():
        good_path = dict.fromkeys(page.path_params, request_id)
        example = dict(page.example)
        response = client.get(_url(page, good_path, example))
        assert response.status_code == 200, name
        for param in page.path_params:
            for value in HOSTILE:
                url = _url(page, {**good_path, param: value}, example)
                response = client.get(url)
                tried += 1
                assert response.status_code in (200, 404), (url, response.status_code)
        for param in page.params:
            for value in HOSTILE:
                args = {**example, **page.needs.get(param, {}), param: value}
                url = _url(page, good_path, args)
                response = client.get(url)
                tried += 1
                assert response.status_code in (200, 404), (url, response.status_code)
                if response.status_code == 404:
                    # Only a route page asked for no route.
                    assert (name, param) == ("route", "name"), url
                    assert not value.strip()
    assert tried > 300


@pytest.mark.parametrize(
    ("page", "args", "message"),
    [
        ("events", {"actor_id": "9223372036854775808"}, "actor_id must be a whole"),
        ("events", {"before_id": "-9223372036854775809"}, "before_id must be a whole"),
        ("events", {"actor_id": "NaN"}, "actor_id must be a whole"),
        ("events", {"severity": "\x00"}, "Unknown severity"),
        (
            "overview",
            {"window": "custom", "since": "0001-01-01T00:00+01:00"},
            "since must be",
        ),
        (
            "events",
            {
                "window": "custom",
                "since": "2026-01-01T00:00",
                "until": "9999-12-31T23:59-01:00",
            },
            "until must be",
        ),
        ("overview", {"window": "custom", "since": "1969-12-31T00:00"}, "since must"),
    ],
)
def test_a_bad_value_is_answered_with_the_pages_message(
    bundle: Bundle, page: str, args: dict[str, str], message: str
) -> None:
    bundle.telemetry.init_dashboard(bundle.app, authorize=lambda: True)
    url = _url(params.PAGES[page], {}, args)
    response = bundle.client().get(url)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)


def test_the_views_read_only_declared_parameters(bundle: Bundle) -> None:
    app = bundle.app
    bundle.telemetry.init_dashboard(app, authorize=lambda: True)
    with app.test_request_context("/_telemetry/events?nope=1"):
        app.preprocess_request()
        args = params.current()
        assert args.get("before_id") is None
        with pytest.raises(RuntimeError, match="declare it"):
            args.get("nope")


def test_the_read_api_takes_any_filter_value(bundle: Bundle) -> None:
    _store(bundle)
    with bundle.app.app_context():
        events = bundle.telemetry.events
        assert len(events(limit=100)) == 5
        kwargs: dict[str, t.Any]
        for kwargs in (
            {"actor_id": 2**63},
            {"actor_id": -(2**63) - 1},
            {"before_id": -(2**63)},
            {"after_id": 2**63 - 1},
            {"request_id": "a\x00b"},
            {"route": "\x00"},
            {"route": "shop.*\x00"},
            {"event_type": "http_request_end\x00"},
            {"event_type": ["\x00"]},
            {"actor_type": "user\x00"},
        ):
            assert events(**kwargs) == [], kwargs
        assert len(events(before_id=2**70)) == 5
        assert len(events(after_id=-(2**70))) == 5
        assert len(events(event_type=["\x00", "http_request_end"])) == 5
        assert [e.actor_id for e in events(actor_id=2**63 - 1)] == [2**63 - 1] * 2
        for kwargs in (
            {"actor_id": "1"},
            {"before_id": 1.5},
            {"after_id": True},
            {"min_severity": "\x00"},
            {"severity": "nope"},
            {"since": dt.timedelta(days=10**6)},
        ):
            with pytest.raises(ValueError, match=r"must be|out of range"):
                events(**kwargs)
        summary = reading.request_summary(
            bundle.db.engines[None],
            bundle.traces,
            since=dt.timedelta(days=1),
            route="\x00",
        )
        assert list(summary) == []
