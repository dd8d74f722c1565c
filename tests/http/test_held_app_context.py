"""A test harness that holds an app context around its client: Flask then
reuses that context's ``g`` for every request, so nothing telemetry keeps
in ``g`` may outlive the request that put it there."""

from __future__ import annotations

import pytest

from conftest import MakeApp
from flask_telemetry import EventType
from flask_telemetry.http import hooks


def test_an_excluded_request_does_not_reuse_the_previous_ones_context(
    make_app: MakeApp,
) -> None:
    bundle = make_app(TELEMETRY_DELIVERY="sync")
    app, telemetry = bundle.app, bundle.telemetry

    @app.get("/work")
    def work() -> str:
        return "ok"

    @app.get("/health")
    def health() -> str:
        telemetry.record(EventType.CACHE_MISS)  # inside an excluded request
        return "ok"

    with app.app_context():
        client = app.test_client()
        first = client.get("/work")
        second = client.get("/health")
        third = client.get("/health")
    assert first.status_code == second.status_code == third.status_code == 200
    assert "X-Request-ID" not in second.headers
    rows = bundle.rows()
    ends = [r for r in rows if r.event_type == EventType.HTTP_REQUEST_END.value]
    assert len(ends) == 1  # /work only, once
    misses = [r for r in rows if r.event_type == EventType.CACHE_MISS.value]
    assert len(misses) == 2
    # Recorded in requests telemetry leaves out: not the first request's id.
    assert all(r.request_id != ends[0].request_id for r in misses)


def test_a_request_after_a_failed_read_does_not_reuse_the_previous_context(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_app(TELEMETRY_DELIVERY="sync")
    app = bundle.app

    @app.get("/work")
    def work() -> str:
        return "ok"

    def broken() -> str:
        raise RuntimeError("no id today")

    with app.app_context():
        client = app.test_client()
        first = client.get("/work")
        # Telemetry cannot read the second request (logged, the request
        # served): nothing of the first request's context is reused.
        monkeypatch.setattr(hooks, "new_request_id", broken)
        second = client.get("/work")
    assert second.status_code == 200
    assert second.headers.get("X-Request-ID") != first.headers["X-Request-ID"]
    rows = bundle.rows()
    ends = [r for r in rows if r.event_type == EventType.HTTP_REQUEST_END.value]
    assert [r.request_id for r in ends] == [first.headers["X-Request-ID"]]
