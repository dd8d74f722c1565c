"""Unhandled exceptions (system_exception) and Flask-Limiter hits (rate_limit_hit)."""

from __future__ import annotations

import sys
import typing as t

import pytest
import sqlalchemy as sa
from flask import abort
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from conftest import Bundle, MakeApp
from flask_telemetry import ConfigVars, EventType
from flask_telemetry.integrations import DidNotEnable
from flask_telemetry.integrations import exceptions as telemetry_exceptions
from flask_telemetry.integrations import flask_limiter as telemetry_limiter

# Behaviour of Flask and Flask-Limiter, the same on every database.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


class PaymentDeclined(Exception):
    """An application's own exception."""


def events(bundle: Bundle, event_type: EventType) -> list[sa.Row[t.Any]]:
    return [r for r in bundle.rows() if r.event_type == event_type.value]


@pytest.fixture
def failing(make_app: MakeApp) -> Bundle:
    bundle = make_app(PROPAGATE_EXCEPTIONS=False)

    @bundle.app.get("/pay")
    def pay() -> str:
        raise PaymentDeclined("card 4111111111111111 of alice@example.com")

    @bundle.app.get("/zero")
    def zero() -> str:
        return str(1 / 0)

    @bundle.app.get("/missing")
    def missing() -> str:
        abort(404)

    @bundle.app.errorhandler(KeyError)
    def handled(exc: KeyError) -> tuple[str, int]:
        return "handled", 400

    @bundle.app.get("/handled")
    def key() -> str:
        raise KeyError("k")

    return bundle


def test_unhandled_exception_recorded_with_class_and_route(failing: Bundle) -> None:
    telemetry_exceptions.instrument(failing.app, failing.telemetry)
    client = failing.client()
    response = client.get("/pay")
    assert response.status_code == 500
    assert client.get("/zero").status_code == 500
    assert client.get("/missing").status_code == 404
    assert client.get("/handled").status_code == 400
    pay, zero = events(failing, EventType.SYSTEM_EXCEPTION)
    assert pay.severity == "error"
    assert pay.route_name == "pay"
    assert pay.request_id == response.headers["X-Request-ID"]
    assert pay.metadata == {"exception": f"{__name__}.PaymentDeclined"}
    assert zero.metadata == {"exception": "ZeroDivisionError"}
    assert zero.route_name == "zero"
    assert "4111" not in str(failing.rows())


def test_the_message_only_when_configured(failing: Bundle) -> None:
    telemetry_exceptions.instrument(failing.app, failing.telemetry, messages=True)
    failing.client().get("/zero")
    (zero,) = events(failing, EventType.SYSTEM_EXCEPTION)
    assert zero.metadata == {
        "exception": "ZeroDivisionError",
        "message": "division by zero",
    }


def test_exceptions_in_testing_mode_still_propagate(make_app: MakeApp) -> None:
    bundle = make_app()  # TESTING: Flask re-raises after the signal

    @bundle.app.get("/boom")
    def boom() -> str:
        raise LookupError("boom")

    telemetry_exceptions.instrument(bundle.app, bundle.telemetry)
    with pytest.raises(LookupError):
        bundle.client().get("/boom")
    (event,) = events(bundle, EventType.SYSTEM_EXCEPTION)
    assert event.metadata["exception"] == "LookupError"


def test_exceptions_instrument_is_idempotent_and_undone(failing: Bundle) -> None:
    telemetry_exceptions.instrument(failing.app, failing.telemetry)
    telemetry_exceptions.instrument(failing.app, failing.telemetry)
    failing.client().get("/zero")
    assert len(events(failing, EventType.SYSTEM_EXCEPTION)) == 1
    telemetry_exceptions.uninstrument(failing.app)
    telemetry_exceptions.uninstrument(failing.app)
    failing.client().get("/zero")
    assert len(events(failing, EventType.SYSTEM_EXCEPTION)) == 1


def test_a_broken_recorder_leaves_the_500_alone(
    failing: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry_exceptions.instrument(failing.app, failing.telemetry)

    def broken(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise RuntimeError("telemetry is broken")

    monkeypatch.setattr(failing.telemetry, "record", broken)
    response = failing.client().get("/zero")
    assert response.status_code == 500
    assert b"Internal Server Error" in response.data


@pytest.fixture
def limited(make_app: MakeApp) -> tuple[Bundle, Limiter]:
    bundle = make_app(RATELIMIT_STORAGE_URI="memory://")
    limiter = Limiter(get_remote_address, app=bundle.app)
    breaches: list[str] = []

    @bundle.app.get("/search")
    @limiter.limit("2 per minute")
    def search() -> str:
        return "results"

    @bundle.app.get("/free")
    def free() -> str:
        return "free"

    @bundle.app.get("/login")
    @limiter.limit("1 per minute", on_breach=lambda limit: breaches.append("own"))
    def login() -> str:
        return "form"

    bundle.app.config["breaches"] = breaches
    return bundle, limiter


def test_a_rejected_request_is_a_rate_limit_hit(
    limited: tuple[Bundle, Limiter],
) -> None:
    bundle, _ = limited
    telemetry_limiter.instrument(bundle.app, bundle.telemetry)
    client = bundle.client()
    statuses = [client.get("/search").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    for _ in range(3):
        assert client.get("/free").status_code == 200
    (hit,) = events(bundle, EventType.RATE_LIMIT_HIT)
    assert hit.severity == "warning"
    assert hit.route_name == "search"
    assert hit.metadata == {"limit": "2 per 1 minute", "method": "GET", "shared": False}
    assert "127.0.0.1" not in str(hit.metadata)  # never the limiter's key
    ends = events(bundle, EventType.HTTP_REQUEST_END)
    assert hit.request_id == ends[2].request_id
    assert ends[2].metadata["status"] == 429


def test_the_applications_on_breach_still_runs(
    limited: tuple[Bundle, Limiter],
) -> None:
    bundle, _ = limited
    telemetry_limiter.instrument(bundle.app, bundle.telemetry)
    client = bundle.client()
    assert [client.get("/login").status_code for _ in range(2)] == [200, 429]
    assert bundle.app.config["breaches"] == ["own"]
    (hit,) = events(bundle, EventType.RATE_LIMIT_HIT)
    assert hit.route_name == "login"
    assert hit.metadata["limit"] == "1 per 1 minute"


def test_limiter_instrument_is_idempotent_and_undone(
    limited: tuple[Bundle, Limiter],
) -> None:
    bundle, _ = limited
    telemetry_limiter.instrument(bundle.app, bundle.telemetry)
    telemetry_limiter.instrument(bundle.app, bundle.telemetry)
    client = bundle.client()
    assert [client.get("/login").status_code for _ in range(2)] == [200, 429]
    assert len(events(bundle, EventType.RATE_LIMIT_HIT)) == 1
    telemetry_limiter.uninstrument(bundle.app)
    telemetry_limiter.uninstrument(bundle.app)
    assert client.get("/login").status_code == 429
    assert len(events(bundle, EventType.RATE_LIMIT_HIT)) == 1


def test_a_limiter_set_up_after_instrument_is_watched(make_app: MakeApp) -> None:
    bundle = make_app(
        RATELIMIT_STORAGE_URI="memory://",
        RATELIMIT_DEFAULT="1/minute",
        **{ConfigVars.RECORD_REQUESTS: False},
    )
    telemetry_limiter.instrument(bundle.app, bundle.telemetry)
    Limiter(get_remote_address, app=bundle.app)

    @bundle.app.get("/page")
    def page() -> str:
        return "page"

    client = bundle.client()
    assert [client.get("/page").status_code for _ in range(2)] == [200, 429]
    (hit,) = bundle.rows()
    assert hit.event_type == "rate_limit_hit"
    assert hit.metadata["limit"] == "1 per 1 minute"


def test_a_missing_flask_limiter_names_the_extra(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_app()
    monkeypatch.setitem(sys.modules, "flask_limiter", None)
    with pytest.raises(DidNotEnable, match=r"flask-telemetry\[limiter\]"):
        telemetry_limiter.instrument(bundle.app, bundle.telemetry)
