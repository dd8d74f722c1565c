"""Shipping quotes from another service, through an instrumented session.

The carrier's service is at ``SHIPPING_URL``. Calls carry this request's id
(``X-Request-ID``) and ``traceparent``, so a carrier that runs flask_telemetry
too records its events under the same id; failures and slow answers are
recorded here as ``external_call_fail`` / ``external_call_slow``.
"""

from __future__ import annotations

import typing as t

import requests
from flask import Blueprint, current_app
from flask.blueprints import BlueprintSetupState

from flask_telemetry.integrations import requests as telemetry_requests

from .extensions import telemetry

bp = Blueprint("shipping", __name__, url_prefix="/shipping")

#: One session for the app's calls to the carrier.
carrier = requests.Session()


@bp.record_once
def _instrument(state: BlueprintSetupState) -> None:
    telemetry_requests.instrument(carrier, telemetry, slow_ms=500)


@bp.get("/quote/<int:product_id>")
def quote(product_id: int) -> tuple[dict[str, t.Any], int]:
    base = current_app.config.get("SHIPPING_URL", "http://127.0.0.1:5001")
    try:
        answer = carrier.get(f"{base}/quotes/{product_id}", timeout=2)
    except requests.RequestException:
        return {"error": "the carrier is unreachable"}, 503
    if answer.status_code != 200:
        return {"error": f"the carrier answered {answer.status_code}"}, 502
    return answer.json(), 200
