"""Rows written by anything: every reader answers, and counts what it cannot read.

The rows here are inserted with plain SQL, past the writer's validation, as
another program (or a hand-made ``record()`` call) could store them: metadata
of any JSON shape, request-end figures of the wrong type, text that is not
JSON (SQLite, where the column is text), unknown event types and
severities, NULL and hostile routes. Every page, read command and read API
call must answer; the good rows must still be counted exactly, and the rows
whose request-end figures cannot be read are left out and counted.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask import Flask

from conftest import Bundle, MakeApp
from flask_telemetry import EventType
from reading_data import NOW, engine_of, request_end, store

BIDI_ROUTE = ("r\u202eoute\u2066" * 40)[:255]

#: Request ends whose figures cannot be read, as JSON values of ``metadata``.
UNREADABLE: list[t.Any] = [
    {"status": "200 OK", "duration_ms": 3.0},
    {"status": "<script>", "duration_ms": 3.0},
    {"status": None, "duration_ms": 3.0},
    {"status": True, "duration_ms": 3.0},
    {"status": 200.5, "duration_ms": 3.0},
    {"status": [200], "duration_ms": 3.0},
    {"status": {"code": 200}, "duration_ms": 3.0},
    {"status": 10**30, "duration_ms": 3.0},
    {"status": -5, "duration_ms": 3.0},
    {"status": 1e308, "duration_ms": 3.0},
    {"status": 200, "duration_ms": "3"},
    {"status": 200, "duration_ms": None},
    {"status": 200, "duration_ms": True},
    {"status": 200, "duration_ms": [3]},
    {"status": 200, "duration_ms": 10**30},
    {"status": 200, "duration_ms": -5},
    {"status": 200, "duration_ms": 1e308},
    {"status": 200},
    {"duration_ms": 3.0},
    {},
    [200, 3.0],
    "status",
    None,
    12,
    {"a": [{"b": [None, {"c": "\u202e"}]}], "status": {"duration_ms": 1}},
]

#: Request ends that are read, with odd but readable extras.
READABLE: list[dict[str, t.Any]] = [
    {"status": 200, "duration_ms": 3},
    {"status": 503, "duration_ms": 0.5, "exception": ["not", "a", "string"]},
    {"status": 404, "duration_ms": 7.25, "slow": "yes", "sample_rate": "half"},
    {"status": 200, "duration_ms": 4.0, "sample_rate": 0, "method": 7},
    {"status": 201, "duration_ms": 2.0e3, "sample_rate": 1e-300},
    {"status": 200, "duration_ms": 1.0, "sample_rate": 10**30},
]

#: Texts that are no JSON at all (SQLite stores whatever it is given).
NOT_JSON = ["{not json", "", "NaN", '{"status": 200, "duration_ms": 3', "\x00"]


def _insert(bundle: Bundle, rows: list[dict[str, t.Any]]) -> None:
    """Store ``rows`` with plain SQL; ``metadata_text`` is the column's text."""
    table = bundle.traces
    engine = engine_of(bundle)
    with engine.begin() as conn:
        for row in rows:
            text = row.pop("metadata_text")
            meta: t.Any = sa.bindparam("m", text, type_=sa.Text())
            if engine.dialect.name == "postgresql":
                meta = sa.cast(meta, sa.dialects.postgresql.JSON)
            at = NOW - dt.timedelta(minutes=3)
            values = {
                "actor_type": "system",
                "severity": "info",
                "occurred_at": at
                if engine.dialect.name == "postgresql"
                else at.replace(tzinfo=None),
                **row,
            }
            conn.execute(sa.insert(table).values(**values, metadata=meta))


def _hostile_rows(bundle: Bundle) -> int:
    """Store the hostile rows; the number of unreadable request ends."""
    rows: list[dict[str, t.Any]] = []
    for i, meta in enumerate(UNREADABLE):
        rows.append(
            {
                "event_type": "http_request_end",
                "route_name": ["shop.pay", None, BIDI_ROUTE][i % 3],
                "request_id": f"bad-{i}",
                "metadata_text": json.dumps(meta),
            }
        )
    for i, meta in enumerate(READABLE):
        rows.append(
            {
                "event_type": "http_request_end",
                "route_name": "shop.odd",
                "request_id": f"odd-{i}",
                "metadata_text": json.dumps(meta),
            }
        )
    unreadable = len(UNREADABLE)
    if engine_of(bundle).dialect.name == "sqlite":
        for i, text in enumerate(NOT_JSON):
            for event_type in ("http_request_end", "cache_miss"):
                rows.append(
                    {
                        "event_type": event_type,
                        "route_name": "shop.pay",
                        "request_id": f"text-{i}",
                        "metadata_text": text,
                    }
                )
        unreadable += len(NOT_JSON)
    rows += [
        {
            "event_type": "no_such_type",
            "severity": "apocalyptic",
            "route_name": BIDI_ROUTE,
            "request_id": "odd-type",
            "metadata_text": '{"status": "x"}',
        },
        {
            "event_type": "http_request_end",
            "severity": "nope",
            "route_name": None,
            "request_id": "odd-severity",
            "actor_type": "martian",
            "metadata_text": '{"status": 500, "duration_ms": 9.5}',
        },
    ]
    _insert(bundle, rows)
    return unreadable


#: Good rows, stored through the writer: route -> (statuses, durations).
GOOD = {
    "shop.pay": ([200, 200, 500, 404], [10.0, 20.0, 30.0, 40.0]),
    "shop.odd": ([200], [5.0]),
}


@pytest.fixture
def hostile(make_app: MakeApp) -> tuple[Bundle, int]:
    bundle = make_app(TELEMETRY_DELIVERY="sync")
    store(
        bundle,
        [
            request_end(route, ms, status=status, at=NOW - dt.timedelta(minutes=4))
            for route, (statuses, durations) in GOOD.items()
            for status, ms in zip(statuses, durations, strict=True)
        ],
    )
    unreadable = _hostile_rows(bundle)
    bundle.telemetry.init_dashboard(bundle.app, authorize=lambda: True)
    return bundle, unreadable


def test_the_summary_counts_good_rows_and_the_unreadable(
    hostile: tuple[Bundle, int],
) -> None:
    bundle, unreadable = hostile
    with bundle.app.app_context():
        summary = bundle.telemetry.request_summary(since=dt.timedelta(hours=1))
    by_route = {r.route_name: r for r in summary}
    pay = by_route["shop.pay"]
    assert (pay.requests, pay.errors, pay.client_errors) == (4, 1, 1)
    assert pay.rows == 4
    assert pay.max_ms == 40.0
    assert pay.mean_ms == 25.0
    odd = by_route["shop.odd"]
    # The writer's row and six readable odd ones; the unreadable sample rates
    # count each row once.
    assert odd.rows == 1 + len(READABLE)
    assert odd.requests == 1 + len(READABLE)
    assert odd.errors == 1  # the 503 (its exception is no string, but present)
    assert odd.client_errors == 1
    assert odd.max_ms == 2000.0
    # The row of an unknown severity is a request end and readable.
    assert by_route[None].requests == 1
    assert BIDI_ROUTE not in by_route  # only unreadable rows there
    assert summary.unreadable == unreadable


def test_every_series_answers(hostile: tuple[Bundle, int]) -> None:
    from flask_telemetry.reading import series

    bundle, _ = hostile
    table = bundle.traces
    since, until = NOW - dt.timedelta(hours=1), NOW + dt.timedelta(minutes=1)
    with engine_of(bundle).connect() as conn:
        for route, unmatched in (("shop.pay", False), (None, True), (None, False)):
            bounds: dict[str, t.Any] = {
                "since": since,
                "until": until,
                "route": route,
                "unmatched": unmatched,
            }
            buckets = series.traffic(conn, table, **bounds)
            histogram = series.latency_histogram(conn, table, **bounds)
            statuses = series.status_breakdown(conn, table, **bounds)
            slowest = series.slowest(conn, table, **bounds)
            if route == "shop.pay":
                assert sum(b.requests for b in buckets) == 4
                assert sum(b.errors for b in buckets) == 1
                assert sum(h.requests for h in histogram) == 4
                assert sorted((s.status, s.requests) for s in statuses) == [
                    (200, 2),
                    (404, 1),
                    (500, 1),
                ]
                assert [s.duration_ms for s in slowest] == [40.0, 30.0, 20.0, 10.0]


def test_the_event_api_reads_every_row(hostile: tuple[Bundle, int]) -> None:
    bundle, _ = hostile
    with bundle.app.app_context():
        events = bundle.telemetry.events(limit=1000)
        counts = bundle.telemetry.event_counts(since=dt.timedelta(hours=1))
        for event in events:
            json.dumps(event.as_dict(), allow_nan=False)
    with engine_of(bundle).connect() as conn:
        stored = conn.execute(
            sa.select(sa.func.count()).select_from(bundle.traces)
        ).scalar_one()
    assert len(events) == stored
    assert sum(c.count for c in counts) == len(events)
    by_request = {e.request_id: e for e in events}
    assert by_request["bad-20"].metadata == {"_raw": [200, 3.0]}
    assert by_request["bad-22"].metadata == {}
    assert "no_such_type" in {c.event_type for c in counts}
    if engine_of(bundle).dialect.name == "sqlite":
        assert by_request["text-0"].metadata == {"_raw": "{not json"}


def _pages(bundle: Bundle) -> list[str]:
    urls = []
    for window in ("", "window=1h", "window=24h", "window=7d", "exact=1"):
        urls.append(f"/_telemetry/?{window}")
        urls.append(f"/_telemetry/events?{window}")
        for name in ("shop.pay", "shop.odd", BIDI_ROUTE):
            urls.append(f"/_telemetry/route?name={quote(name)}&{window}")
        urls.append(f"/_telemetry/route?unmatched=1&{window}")
    urls += [f"/_telemetry/events?event_type={t}" for t in ("http_request_end", "x")]
    urls += [f"/_telemetry/events?route={quote(BIDI_ROUTE)}"]
    ids = ["bad-0", "bad-20", "bad-22", "odd-1", "odd-type", "odd-severity"]
    if engine_of(bundle).dialect.name == "sqlite":
        ids += ["text-0", "text-2", "text-4"]
    urls += [f"/_telemetry/trace/{i}" for i in ids]
    return urls


def test_every_page_answers(hostile: tuple[Bundle, int]) -> None:
    bundle, unreadable = hostile
    client = bundle.app.test_client()
    for url in _pages(bundle):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        response.close()
    overview = client.get("/_telemetry/?window=1h&exact=1").get_data(as_text=True)
    assert f"{unreadable} rows unreadable" in overview
    route = client.get("/_telemetry/route?name=shop.pay&exact=1").get_data(as_text=True)
    assert "rows unreadable" in route


def test_every_read_command_answers(hostile: tuple[Bundle, int]) -> None:
    bundle, unreadable = hostile
    runner = bundle.app.test_cli_runner()
    commands = [
        ["telemetry", "report", "--since", "1h"],
        ["telemetry", "report", "--since", "1h", "--json"],
        ["telemetry", "tail", "-n", "100"],
        ["telemetry", "tail", "-n", "100", "--json"],
    ]
    ids = ["bad-0", "bad-20", "bad-22", "odd-1", "odd-type", "odd-severity"]
    if engine_of(bundle).dialect.name == "sqlite":
        ids += ["text-0", "text-2", "text-4"]
    for request_id in ids:
        commands.append(["telemetry", "trace", request_id])
        commands.append(["telemetry", "trace", request_id, "--json"])
    for args in commands:
        result = runner.invoke(args=args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        if "--json" in args:
            for line in result.output.splitlines() if "tail" in args else []:
                json.loads(line)
    text = runner.invoke(args=commands[0]).output
    assert f"{unreadable} rows unreadable" in text
    data = json.loads(runner.invoke(args=commands[1]).output)
    assert data["unreadable"] == unreadable
    pay = next(r for r in data["routes"] if r["route_name"] == "shop.pay")
    assert pay["requests"] == 4


def test_a_record_call_cannot_break_the_pages(make_app: MakeApp) -> None:
    """The reproduction of the report: one public call, then every page."""
    bundle = make_app(TELEMETRY_DELIVERY="sync")
    app: Flask = bundle.app
    bundle.telemetry.init_dashboard(app, authorize=lambda: True)
    with app.app_context():
        bundle.telemetry.record(
            EventType.HTTP_REQUEST_END,
            metadata={"status": "200 OK", "duration_ms": 3.0},
        )
        bundle.telemetry.record(
            EventType.HTTP_REQUEST_END,
            metadata={"status": "<script>", "duration_ms": 3.0},
        )
    client = app.test_client()
    for url in (
        "/_telemetry/",
        "/_telemetry/?window=7d",
        "/_telemetry/route?unmatched=1",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "2 rows unreadable" in response.get_data(as_text=True)
    result = app.test_cli_runner().invoke(
        args=["telemetry", "report", "--since", "24h"]
    )
    assert result.exit_code == 0, result.output
    assert "2 rows unreadable" in result.output
