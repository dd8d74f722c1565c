from __future__ import annotations

from flask.testing import FlaskClient

from flask_telemetry import EventType
from flask_telemetry.testing import TelemetryCapture


def test_second_lookup_hits_the_cache(
    client: FlaskClient, telemetry_capture: TelemetryCapture
) -> None:
    client.get("/price/sku-1")
    client.get("/price/sku-1")

    telemetry_capture.assert_recorded(
        EventType.CACHE_MISS, metadata={"key": "sku-1"}, count=1
    )
    hit = telemetry_capture.assert_recorded(EventType.CACHE_HIT, "debug")
    assert hit.route_name == "price"
    telemetry_capture.assert_not_recorded(EventType.CACHE_MISS, metadata={"key": "x"})
