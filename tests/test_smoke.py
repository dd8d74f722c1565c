from __future__ import annotations

from conftest import Bundle
from flask_telemetry import EventType


def test_record_in_request_is_stored(bundle: Bundle) -> None:
    @bundle.app.get("/hello")
    def hello() -> str:
        bundle.telemetry.record(EventType.CACHE_MISS, metadata={"key": "a"})
        return "hi"

    response = bundle.client().get("/hello", headers={"X-Request-ID": "abc-1"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "abc-1"
    rows = bundle.rows()
    assert [r.event_type for r in rows] == ["cache_miss", "http_request_end"]
    assert {r.request_id for r in rows} == {"abc-1"}
    assert rows[0].route_name == "hello"
