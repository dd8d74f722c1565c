"""Correlation: traceparent, the log filter, carrying ids; timing and streaming."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
import typing as t
import uuid

import pytest
from flask import Response, stream_with_context

from conftest import Bundle, MakeApp
from flask_telemetry import (
    ConfigVars,
    Correlation,
    EventType,
    RequestIdFilter,
    current_request_id,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def logged(bundle: Bundle) -> t.Iterator[tuple[Bundle, io.StringIO]]:
    """The bundle with a /log view, and what its log handler wrote."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(request_id)s %(trace_id)s %(message)s"))
    log = logging.getLogger("test_correlation")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    @bundle.app.get("/log")
    def log_view() -> str:
        log.info("in the view")
        bundle.telemetry.record(EventType.CACHE_MISS, metadata={"key": "k"})
        return "ok"

    yield bundle, stream
    log.removeHandler(handler)


def test_traceparent_trace_id_becomes_the_request_id(
    logged: tuple[Bundle, io.StringIO],
) -> None:
    bundle, stream = logged
    response = bundle.client().get("/log", headers={"traceparent": TRACEPARENT})
    assert response.headers["X-Request-ID"] == TRACE_ID
    miss, end = bundle.rows()
    assert miss.request_id == end.request_id == TRACE_ID
    assert miss.metadata == {"trace_id": TRACE_ID, "key": "k"}
    assert end.metadata["trace_id"] == TRACE_ID
    assert end.metadata["parent_id"] == PARENT_ID
    assert stream.getvalue() == f"{TRACE_ID} {TRACE_ID} in the view\n"


def test_request_id_header_wins_and_trace_id_is_kept(
    logged: tuple[Bundle, io.StringIO],
) -> None:
    bundle, stream = logged
    bundle.client().get(
        "/log", headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-7"}
    )
    miss, end = bundle.rows()
    assert miss.request_id == end.request_id == "req-7"
    assert miss.metadata["trace_id"] == end.metadata["trace_id"] == TRACE_ID
    assert stream.getvalue() == f"req-7 {TRACE_ID} in the view\n"


@pytest.mark.parametrize(
    "header",
    [
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # forbidden version
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # upper-case hex
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has four fields
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",  # short trace id
        f"00-{TRACE_ID}x-{PARENT_ID}-01",
        "00-\x00" + TRACE_ID[1:] + f"-{PARENT_ID}-01",
        "garbage",
        "",
    ],
)
def test_malformed_traceparent_is_ignored(
    logged: tuple[Bundle, io.StringIO], header: str
) -> None:
    bundle, stream = logged
    bundle.client().get("/log", environ_overrides={"HTTP_TRACEPARENT": header})
    miss, end = bundle.rows()
    assert uuid.UUID(miss.request_id).version == 4
    assert "trace_id" not in miss.metadata
    assert "trace_id" not in end.metadata
    assert stream.getvalue() == f"{miss.request_id} - in the view\n"


def test_later_traceparent_versions_are_read(bundle: Bundle) -> None:
    @bundle.app.get("/")
    def index() -> str:
        return "ok"

    header = f"01-{TRACE_ID}-{PARENT_ID}-00-future-field"
    bundle.client().get("/", headers={"traceparent": header})
    assert bundle.rows()[0].request_id == TRACE_ID


def test_traceparent_can_be_turned_off(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.TRACEPARENT: False})

    @bundle.app.get("/")
    def index() -> str:
        return "ok"

    bundle.client().get("/", headers={"traceparent": TRACEPARENT})
    (row,) = bundle.rows()
    assert row.request_id != TRACE_ID
    assert "trace_id" not in row.metadata


def test_correlation_carries_the_request_id_into_a_thread(bundle: Bundle) -> None:
    telemetry = bundle.telemetry
    seen: list[str | None] = []
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter(default="none"))
    handler.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    log = logging.getLogger("test_correlation.worker")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    def job(corr: Correlation) -> None:
        with bundle.app.app_context():
            seen.append(current_request_id())
            with corr.activate():
                seen.append(current_request_id())
                log.info("working")
                telemetry.record(EventType.WORKER_JOB_END)
            seen.append(current_request_id())
            log.info("done")

    @bundle.app.get("/spawn")
    def spawn() -> str:
        worker = threading.Thread(target=job, args=(telemetry.context(),))
        worker.start()
        worker.join()
        return "ok"

    try:
        bundle.client().get("/spawn", headers={"traceparent": TRACEPARENT})
    finally:
        log.removeHandler(handler)
    assert seen == [None, TRACE_ID, None]
    assert stream.getvalue() == f"{TRACE_ID} working\nnone done\n"
    job_row, end = bundle.rows()
    assert end.request_id == TRACE_ID
    assert (job_row.event_type, job_row.request_id) == ("worker_job_end", TRACE_ID)
    assert job_row.actor_type == "system"
    assert job_row.metadata == {"trace_id": TRACE_ID}


def test_context_outside_a_request_is_fresh_or_the_active_one(bundle: Bundle) -> None:
    with bundle.app.app_context():
        fresh = bundle.telemetry.context()
        assert uuid.UUID(fresh.request_id).version == 4
        with fresh.activate():
            assert bundle.telemetry.context() == fresh


def test_timed_records_only_slow_blocks(bundle: Bundle) -> None:
    telemetry = bundle.telemetry
    with bundle.app.app_context():
        with telemetry.timed(EventType.EXTERNAL_CALL_SLOW, threshold_ms=1000):
            pass
        with telemetry.timed(
            EventType.EXTERNAL_CALL_SLOW, threshold_ms=5, metadata={"service": "b"}
        ):
            time.sleep(0.02)
    (row,) = bundle.rows()
    assert (row.event_type, row.severity) == ("external_call_slow", "warning")
    assert row.metadata["service"] == "b"
    assert row.metadata["threshold_ms"] == 5
    assert 20 <= row.metadata["duration_ms"] < 1000


def test_timed_decorator_and_failure_event(bundle: Bundle) -> None:
    telemetry = bundle.telemetry

    @telemetry.timed(
        EventType.EXTERNAL_CALL_SLOW,
        threshold_ms=5,
        on_error=EventType.EXTERNAL_CALL_FAIL,
    )
    def call(delay: float, fail: bool = False) -> str:
        time.sleep(delay)
        if fail:
            raise ConnectionError("refused")
        return "done"

    @telemetry.timed(EventType.DB_QUERY_SLOW, threshold_ms=5)
    async def query() -> int:
        await asyncio.sleep(0.02)
        return 3

    with bundle.app.app_context():
        assert call(0) == "done"
        assert call(0.02) == "done"
        with pytest.raises(ConnectionError):
            call(0, fail=True)
        assert asyncio.run(query()) == 3
    rows = bundle.rows()
    assert [(r.event_type, r.severity) for r in rows] == [
        ("external_call_slow", "warning"),
        ("external_call_fail", "error"),
        ("db_query_slow", "warning"),
    ]
    assert rows[1].metadata["exception"] == "ConnectionError"
    assert rows[2].metadata["duration_ms"] >= 20


def test_slow_request_threshold_per_endpoint(make_app: MakeApp) -> None:
    bundle = make_app(
        **{
            ConfigVars.SLOW_REQUEST_MS: 10_000,
            ConfigVars.SLOW_REQUEST_MS_BY_ENDPOINT: {"report": 5, "api.*": 1},
        }
    )

    @bundle.app.get("/report")
    def report() -> str:
        time.sleep(0.02)
        return "ok"

    @bundle.app.get("/other")
    def other() -> str:
        time.sleep(0.02)
        return "ok"

    client = bundle.client()
    client.get("/report")
    client.get("/other")
    report_row, other_row = bundle.rows()
    assert report_row.severity == "warning"
    assert report_row.metadata["slow"] is True
    assert other_row.severity == "info"
    assert "slow" not in other_row.metadata


@pytest.mark.parametrize("with_context", [False, True])
def test_streamed_response_is_timed_until_the_body_is_closed(
    bundle: Bundle, with_context: bool
) -> None:
    @bundle.telemetry.actor_loader
    def actor() -> tuple[str, int]:
        return ("user", 5)

    def body() -> t.Iterator[str]:
        yield "a"
        time.sleep(0.05)
        yield "b"

    @bundle.app.get("/stream")
    def stream() -> Response:
        return Response(stream_with_context(body()) if with_context else body())

    response = bundle.client().get("/stream")
    assert response.get_data(as_text=True) == "ab"
    with bundle.app.app_context():
        assert bundle.telemetry.stats()["accepted"] == 0  # not closed yet
    response.close()
    (row,) = bundle.rows()
    assert row.event_type == "http_request_end"
    assert row.metadata["duration_ms"] >= 50
    assert (row.route_name, row.actor_type, row.actor_id) == ("stream", "user", 5)
