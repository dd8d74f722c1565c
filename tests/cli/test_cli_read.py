"""flask telemetry report | trace | tail | prune, through the test CLI runner."""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import pytest

from conftest import Bundle
from flask_telemetry.cli import read as cli_read
from flask_telemetry.cli.common import parse_time
from reading_data import NOW, event, request_end, store


def _run(bundle: Bundle, *args: str) -> t.Any:
    return bundle.runner().invoke(args=["telemetry", *args])


@pytest.fixture
def shop(bundle: Bundle) -> Bundle:
    """Requests on three routes, a traced request, and some older events."""
    store(
        bundle,
        [request_end("catalogue.index", float(d)) for d in range(1, 101)]
        + [request_end("catalogue.item", 40.0, status=404)] * 3
        + [request_end("auth.login", 900.0, status=500, exception="KeyError")]
        + [
            event(
                event_type="http_request_end",
                request_id="req-7",
                route_name="catalogue.item",
                metadata={"status": 200, "duration_ms": 12.0, "method": "GET"},
                occurred_at=NOW
                - dt.timedelta(seconds=10)
                + dt.timedelta(milliseconds=12),
            ),
            event(
                event_type="cache_miss",
                request_id="req-7",
                route_name="catalogue.item",
                metadata={"key": "item:7"},
                occurred_at=NOW
                - dt.timedelta(seconds=10)
                + dt.timedelta(milliseconds=2),
            ),
            event(
                event_type="db_query_slow",
                severity="warning",
                request_id="req-7",
                route_name="catalogue.item",
                occurred_at=NOW
                - dt.timedelta(seconds=10)
                + dt.timedelta(milliseconds=9.5),
            ),
            event(event_type="cache_hit", occurred_at=NOW - dt.timedelta(days=3)),
        ],
    )
    return bundle


def test_report_prints_aligned_tables(shop: Bundle) -> None:
    result = _run(shop, "report")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("route"))
    table = lines[header : header + 4]
    routes = [line.split()[0] for line in table[1:4]]
    assert routes == ["catalogue.index", "auth.login", "catalogue.item"]
    # Numbers are right-aligned: every line of the table ends at one column.
    assert len({len(line) for line in table}) == 1
    index = table[1].split()
    assert index[1:6] == ["100", "0", "0", "0.0", "0"]
    assert index[6:] == ["50.5", "50.5", "95.0", "99.0", "100.0"]
    assert "cache_hit" not in result.output  # three days old
    assert "db_query_slow" in result.output


def test_report_json_and_options(shop: Bundle) -> None:
    result = _run(shop, "report", "--json", "--top", "1", "--since", "7d")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"since", "until", "routes", "unreadable", "event_counts"}
    assert data["unreadable"] == 0
    (route,) = data["routes"]
    assert route["route_name"] == "catalogue.index"
    assert route["p95_ms"] == pytest.approx(95.05)
    assert set(route) >= {
        "requests",
        "errors",
        "client_errors",
        "error_rate",
        "slow",
        "mean_ms",
        "p50_ms",
        "p99_ms",
        "max_ms",
    }
    counts = {
        (c["event_type"], c["severity"]): c["count"] for c in data["event_counts"]
    }
    assert counts[("cache_hit", "info")] == 1
    routed = json.loads(_run(shop, "report", "--json", "--route", "auth.*").output)
    assert [r["route_name"] for r in routed["routes"]] == ["auth.login"]
    assert routed["routes"][0]["errors"] == 1
    late = _run(shop, "report", "--since", (NOW + dt.timedelta(hours=1)).isoformat())
    assert "(no http_request_end events)" in late.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["report", "--since", "yesterday"], "--since"),
        (["report", "--until", "5x"], "--until"),
        (["report", "--top", "0"], "--top"),
        (["tail", "-n", "0"], "-n"),
        (["tail", "--min-severity", "loud"], "--min-severity"),
        (["prune", "--older-than", "soon"], "--older-than"),
        (["prune", "--older-than", "2026-11-20T00:00:00"], "--older-than"),
        (["prune", "--batch-size", "0"], "--batch-size"),
        (["prune", "--max-seconds", "-1"], "--max-seconds"),
    ],
)
def test_bad_values_are_usage_errors(
    bundle: Bundle, args: list[str], option: str
) -> None:
    result = _run(bundle, *args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output
    if args[1] in ("--since", "--until", "--older-than") and "T" not in args[2]:
        assert "7d" in result.output


def test_trace_prints_a_request_oldest_first(shop: Bundle) -> None:
    result = _run(shop, "trace", "req-7")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Request req-7: 3 event(s)")
    rows = [line.split() for line in lines[2:] if "=" not in line]
    # From the request's start: its end (+12 ms) less its duration (12 ms).
    assert [(r[0], r[1]) for r in rows] == [
        ("2.0", "cache_miss"),
        ("9.5", "db_query_slow"),
        ("12.0", "http_request_end"),
    ]
    data = json.loads(_run(shop, "trace", "req-7", "--json").output)
    assert [d["offset_ms"] for d in data] == [2.0, 9.5, 12.0]
    assert data[0]["metadata"] == {"key": "item:7"}
    assert data[0]["occurred_at"].endswith("+00:00")


def test_trace_shows_metadata_whole(bundle: Bundle) -> None:
    """One key=value line per key under its event, however long the value."""
    error = "ValueError: " + "the job failed because " * 20
    store(
        bundle,
        [
            event(
                event_type="external_call_slow",
                request_id="req-9",
                route_name="shop.pay",
                metadata={"url": "https://pay.example/charge", "duration_ms": 812.5},
                occurred_at=NOW - dt.timedelta(milliseconds=100),
            ),
            event(
                event_type="worker_job_fail",
                severity="error",
                request_id="req-9",
                metadata={"exception": error},
                occurred_at=NOW - dt.timedelta(milliseconds=90),
            ),
        ],
    )
    result = bundle.runner().invoke(
        args=["telemetry", "trace", "req-9"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "…" not in result.output
    call = next(i for i, line in enumerate(lines) if "external_call_slow" in line)
    assert lines[call + 1 : call + 3] == [
        '    url="https://pay.example/charge"',
        "    duration_ms=812.5",
    ]
    assert f"    exception={json.dumps(error)}" in lines
    job = next(line for line in lines if "worker_job_fail" in line)
    assert "(unmatched)" in job  # in a request, no route matched


def test_trace_counts_from_the_request_start(bundle: Bundle) -> None:
    """A 926 ms request: its first event shows when in the request it came."""
    end = NOW - dt.timedelta(seconds=5)
    store(
        bundle,
        [
            event(
                request_id="req-slow",
                route_name="shop.slow",
                occurred_at=end - dt.timedelta(milliseconds=0.3),
            ),
            event(
                event_type="http_request_end",
                request_id="req-slow",
                route_name="shop.slow",
                metadata={"status": 200, "duration_ms": 926.0},
                occurred_at=end,
            ),
        ],
    )
    data = json.loads(_run(bundle, "trace", "req-slow", "--json").output)
    assert [d["offset_ms"] for d in data] == [pytest.approx(925.7), 926.0]
    text = _run(bundle, "trace", "req-slow").output
    assert text.splitlines()[0].endswith(
        (end - dt.timedelta(milliseconds=926)).isoformat(timespec="milliseconds")
    )


@pytest.mark.parametrize(
    ("args", "option", "says"),
    [
        (["report", "--since", "1h", "--until", "2020-01-01"], "--until", "before"),
        (["tail", "--event-type", "nope"], "--event-type", "cache_hit"),
    ],
)
def test_mistakes_are_usage_errors(
    shop: Bundle, args: list[str], option: str, says: str
) -> None:
    result = _run(shop, *args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert says in result.output


def test_report_route_filters_the_events_too(shop: Bundle) -> None:
    data = json.loads(_run(shop, "report", "--json", "--route", "catalogue.*").output)
    counts = {(c["event_type"], c["severity"]) for c in data["event_counts"]}
    assert ("cache_miss", "info") in counts  # req-7's, on catalogue.item
    assert ("http_request_end", "error") not in counts  # auth.login's
    text = _run(shop, "report", "--route", "auth.*").output
    events = text.split("Events of auth.*", 1)[1]
    assert "http_request_end" in events
    assert "cache_miss" not in events


def test_tail_by_route_and_request_id(shop: Bundle) -> None:
    by_id = _run(shop, "tail", "--request-id", "req-7", "--json").output
    assert [json.loads(x)["event_type"] for x in by_id.splitlines()] == [
        "http_request_end",
        "cache_miss",
        "db_query_slow",
    ]
    routed = _run(shop, "tail", "--route", "auth.*", "--json").output
    assert [json.loads(x)["route_name"] for x in routed.splitlines()] == ["auth.login"]


def test_unmatched_requests_have_one_label(bundle: Bundle) -> None:
    store(
        bundle,
        [request_end(None, 5.0), event(request_id="r-u"), event(request_id=None)],
    )
    report = _run(bundle, "report").output
    assert "(unmatched)" in report
    tail = _run(bundle, "tail").output.splitlines()
    assert [line.split()[3] for line in tail] == ["(unmatched)", "(unmatched)", "-"]
    bundle.telemetry.init_dashboard(bundle.app, authorize=lambda: True)
    client = bundle.client()
    assert "<em>(unmatched)</em>" in client.get("/_telemetry/").text
    page = client.get("/_telemetry/route?unmatched=1").text
    assert "<title>(unmatched)" in page


def test_trace_of_an_unknown_request_exits_1(bundle: Bundle) -> None:
    result = _run(bundle, "trace", "nope")
    assert result.exit_code == 1
    assert "No telemetry events for request id 'nope'" in result.output


def test_tail(shop: Bundle) -> None:
    result = _run(shop, "tail", "-n", "3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert [line.split()[2] for line in lines] == [
        "cache_miss",
        "db_query_slow",
        "cache_hit",
    ]  # the last three stored, oldest first
    data = [json.loads(x) for x in _run(shop, "tail", "--json").output.splitlines()]
    assert len(data) == 20
    assert [d["id"] for d in data] == sorted(d["id"] for d in data)
    warned = _run(shop, "tail", "--min-severity", "warning", "--json").output
    assert [
        (json.loads(x)["event_type"], json.loads(x)["severity"])
        for x in warned.splitlines()
    ] == [("http_request_end", "error"), ("db_query_slow", "warning")]
    typed = _run(shop, "tail", "--event-type", "cache_hit", "--json").output
    assert [json.loads(x)["event_type"] for x in typed.splitlines()] == ["cache_hit"]


def test_tail_follow_prints_new_events(
    shop: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 1:
            store(
                shop,
                [event(event_type="cache_hit", metadata={"n": i}) for i in range(1500)],
            )
        elif len(naps) == 2:
            store(shop, [event(event_type="rate_limit_hit")])
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_read, "_sleep", sleep)
    result = _run(shop, "tail", "-n", "1", "--follow", "--json")
    assert result.exit_code == 0, result.output
    data = [json.loads(x) for x in result.output.splitlines()]
    assert len(data) == 1 + 1500 + 1
    assert [d["metadata"].get("n") for d in data[1:1501]] == list(range(1500))
    assert data[-1]["event_type"] == "rate_limit_hit"
    assert [d["id"] for d in data] == sorted({d["id"] for d in data})


def test_prune(bundle: Bundle) -> None:
    store(
        bundle,
        [event(occurred_at=NOW - dt.timedelta(days=9, seconds=i)) for i in range(12)]
        + [event(occurred_at=NOW - dt.timedelta(hours=3))],
    )
    dry = _run(bundle, "prune", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("Would delete 12 event(s) older than")
    assert len(bundle.rows()) == 13
    refused = _run(bundle, "prune", "--older-than", "90m")
    assert refused.exit_code == 2
    assert "--older-than" in refused.output
    assert "--yes" in refused.output
    assert len(bundle.rows()) == 13
    partial = _run(
        bundle,
        "prune",
        "--older-than",
        "P7D",
        "--batch-size",
        "5",
        "--max-seconds",
        "0",
    )
    assert partial.exit_code == 3, partial.output
    assert "7 expired event(s) left" in partial.output
    done = _run(bundle, "prune", "--batch-size", "5", "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["deleted"] == 7
    assert data["batches"] == 2
    assert data["remaining"] == 0
    assert data["partitions_dropped"] == 0
    assert set(data) >= {
        "deleted",
        "batches",
        "seconds",
        "cutoff",
        "partitions_dropped",
    }
    recent = _run(bundle, "prune", "--older-than", "2h", "--yes")
    assert recent.exit_code == 0, recent.output
    assert recent.output.startswith("Deleted 1 event(s)")
    assert bundle.rows() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", dt.timedelta(minutes=90)),
        ("24h", dt.timedelta(hours=24)),
        ("7d", dt.timedelta(days=7)),
        ("2w", dt.timedelta(weeks=2)),
        ("45s", dt.timedelta(seconds=45)),
        ("PT90M", dt.timedelta(minutes=90)),
        ("P1DT12H", dt.timedelta(days=1, hours=12)),
        ("p7d", dt.timedelta(days=7)),
        ("2026-11-27T10:00:00Z", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)),
        ("2026-11-27T10:00", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)),
        (
            "2026-11-27T12:00:00+02:00",
            dt.datetime(2026, 11, 27, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        ),
    ],
)
def test_parse_time(text: str, expected: object) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "7", "d7", "1y", "yesterday", "7 d"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_time(text)
