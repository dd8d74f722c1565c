"""Outbound HTTP with requests and httpx, against a second service on 127.0.0.1.

The second service is a Flask app with this extension on its own SQLite
file, served by werkzeug in a thread: its rows show what the calls carried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
import threading
import time
import typing as t

import httpx
import pytest
import requests
import sqlalchemy as sa
from flask import Flask, request
from flask_migrate import upgrade
from flask_sqlalchemy import SQLAlchemy
from werkzeug.serving import make_server

from conftest import Bundle, MakeApp
from example_app import create_app
from example_app.extensions import db as example_db
from example_app.extensions import telemetry as example_telemetry
from flask_telemetry import ConfigVars, Correlation, EventType, Telemetry
from flask_telemetry.integrations import DidNotEnable
from flask_telemetry.integrations import httpx as telemetry_httpx
from flask_telemetry.integrations import requests as telemetry_requests
from flask_telemetry.integrations._http import trace_id_for

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
CLIENTS = ["requests", "httpx", "httpx-async"]


@dataclasses.dataclass
class Service:
    """The second service: its base URL and its stored rows."""

    url: str
    app: Flask
    db: SQLAlchemy
    telemetry: Telemetry

    def rows(self, path: str | None = None) -> list[sa.Row[t.Any]]:
        with self.app.app_context():
            self.telemetry.flush(5)
            table = self.telemetry.trace_model.__table__
            with self.db.engine.connect() as conn:
                rows = list(conn.execute(sa.select(table).order_by("id")))
        return [r for r in rows if path is None or r.metadata.get("path") == path]


@pytest.fixture
def service(tmp_path: t.Any) -> t.Iterator[Service]:
    app = Flask("second_service")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'second.db'}",
        **{ConfigVars.DELIVERY: "sync", ConfigVars.REQUEST_ID_HEADER: "X-Request-ID"},
    )
    db = SQLAlchemy()
    db.init_app(app)
    telemetry = Telemetry(app)
    with app.app_context():
        db.create_all()

    @app.get("/ok")
    def ok() -> str:
        telemetry.record(EventType.CACHE_MISS, metadata={"path": request.path})
        return "ok"

    @app.get("/unavailable")
    def unavailable() -> tuple[str, int]:
        return "down", 503

    @app.get("/quotes/<int:product_id>")
    def quotes(product_id: int) -> dict[str, int]:
        return {"product_id": product_id, "price_cents": 495}

    @app.get("/slow")
    def slow() -> str:
        time.sleep(0.3)
        return "slow"

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Service(f"http://127.0.0.1:{server.server_port}", app, db, telemetry)
    finally:
        server.shutdown()
        thread.join(5)
        with app.app_context():
            telemetry.shutdown(5)
            db.engine.dispose()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def call(
    kind: str, telemetry: Telemetry, url: str, *, slow_ms: float = 5000, **kw: t.Any
) -> int:
    """GET ``url`` with an instrumented client of ``kind``; the status."""
    if kind == "requests":
        session = telemetry_requests.instrument(
            requests.Session(), telemetry, slow_ms=slow_ms
        )
        with session:
            return session.get(url, timeout=5, **kw).status_code
    if kind == "httpx":
        client = telemetry_httpx.instrument(httpx.Client(), telemetry, slow_ms=slow_ms)
        with client:
            return client.get(url, timeout=5, **kw).status_code

    async def main() -> int:
        aclient = httpx.AsyncClient()
        telemetry_httpx.instrument(aclient, telemetry, slow_ms=slow_ms)
        async with aclient:
            return (await aclient.get(url, timeout=5, **kw)).status_code

    return asyncio.run(main())


def caller(bundle: Bundle, kind: str, target: str, slow_ms: float = 5000) -> None:
    """Give the first app a view that calls ``target`` and reports the outcome."""

    @bundle.app.get("/call")
    def call_view() -> tuple[str, int]:
        try:
            return "called", call(kind, bundle.telemetry, target, slow_ms=slow_ms)
        except (requests.RequestException, httpx.TransportError) as exc:
            return type(exc).__name__, 502


def events(bundle: Bundle, event_type: EventType) -> list[sa.Row[t.Any]]:
    return [r for r in bundle.rows() if r.event_type == event_type.value]


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_second_service_records_the_first_requests_id(
    make_app: MakeApp, service: Service, kind: str
) -> None:
    bundle = make_app()
    caller(bundle, kind, f"{service.url}/ok?token=s3cret-query")
    response = bundle.client().get("/call")
    assert response.status_code == 200, response.text
    request_id = response.headers["X-Request-ID"]
    miss, end = service.rows()
    assert miss.request_id == end.request_id == request_id
    # No traceparent came in: the trace id is the request id's UUID, the
    # same for every call of that request.
    assert miss.metadata["trace_id"] == request_id.replace("-", "")
    assert end.metadata["trace_id"] == trace_id_for(request_id)
    parent = end.metadata["parent_id"]
    assert len(parent) == 16
    assert parent != "0" * 16
    # A fast, successful call records nothing on the caller's side.
    assert [r.event_type for r in bundle.rows()] == ["http_request_end"]


def test_one_request_calling_through_every_client_is_one_trace(
    make_app: MakeApp, service: Service
) -> None:
    bundle = make_app()

    @bundle.app.get("/fan-out")
    def fan_out() -> str:
        for kind in CLIENTS:
            assert call(kind, bundle.telemetry, f"{service.url}/ok") == 200
        return "ok"

    response = bundle.client().get("/fan-out")
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    ends = [r for r in service.rows() if r.event_type == "http_request_end"]
    assert len(ends) == 3
    assert {r.request_id for r in ends} == {request_id}
    assert {r.metadata["trace_id"] for r in ends} == {trace_id_for(request_id)}
    assert len({r.metadata["parent_id"] for r in ends}) == 3  # a span per call


@pytest.mark.parametrize("kind", CLIENTS)
def test_an_incoming_trace_id_travels_on(
    make_app: MakeApp, service: Service, kind: str
) -> None:
    bundle = make_app()
    caller(bundle, kind, f"{service.url}/ok")
    response = bundle.client().get(
        "/call", headers={"traceparent": TRACEPARENT, "X-Request-ID": "order-42"}
    )
    assert response.status_code == 200
    (miss, end) = service.rows()
    assert miss.request_id == "order-42"
    assert end.metadata["trace_id"] == TRACE_ID
    assert end.metadata["parent_id"] != "00f067aa0ba902b7"  # a span of its own


@pytest.mark.parametrize("kind", CLIENTS)
def test_5xx_is_a_failure_without_path_query_or_headers(
    make_app: MakeApp, service: Service, kind: str
) -> None:
    bundle = make_app()
    caller(bundle, kind, f"{service.url}/unavailable?token=s3cret-query")
    response = bundle.client().get("/call")
    assert response.status_code == 503
    (fail,) = events(bundle, EventType.EXTERNAL_CALL_FAIL)
    assert fail.severity == "error"
    assert fail.request_id == response.headers["X-Request-ID"]
    assert fail.route_name == "call_view"
    port = service.url.rsplit(":", 1)[1]
    meta = fail.metadata
    assert meta == {
        "client": kind.split("-")[0],
        "method": "GET",
        "host": f"127.0.0.1:{port}",
        "status": 503,
        "duration_ms": meta["duration_ms"],
    }
    assert 0 < meta["duration_ms"] < 5000
    stored = str(bundle.rows())
    assert "s3cret" not in stored
    assert "unavailable" not in stored


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_transport_error_is_recorded_and_still_raised(
    make_app: MakeApp, closed_port: int, kind: str
) -> None:
    bundle = make_app()
    caller(bundle, kind, f"http://127.0.0.1:{closed_port}/ok")
    response = bundle.client().get("/call")
    assert response.status_code == 502
    assert response.text in {"ConnectionError", "ConnectError"}
    (fail,) = events(bundle, EventType.EXTERNAL_CALL_FAIL)
    assert fail.metadata["error"] == response.text
    assert fail.metadata["status"] is None
    assert fail.metadata["host"] == f"127.0.0.1:{closed_port}"


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_slow_call_is_recorded(
    make_app: MakeApp, service: Service, kind: str
) -> None:
    bundle = make_app()
    caller(bundle, kind, f"{service.url}/slow", slow_ms=150)
    assert bundle.client().get("/call").status_code == 200
    (slow,) = events(bundle, EventType.EXTERNAL_CALL_SLOW)
    assert slow.severity == "warning"
    assert slow.metadata["status"] == 200
    assert slow.metadata["threshold_ms"] == 150
    assert 300 <= slow.metadata["duration_ms"] < 5000
    assert events(bundle, EventType.EXTERNAL_CALL_FAIL) == []


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_callers_own_headers_are_kept(
    make_app: MakeApp, service: Service, kind: str
) -> None:
    bundle = make_app()

    @bundle.app.get("/own")
    def own() -> str:
        headers = {"x-request-id": "chosen-by-caller", "traceparent": TRACEPARENT}
        call(kind, bundle.telemetry, f"{service.url}/ok", headers=headers)
        return "ok"

    assert bundle.client().get("/own").status_code == 200
    (miss, end) = service.rows()
    assert miss.request_id == "chosen-by-caller"
    assert end.metadata["parent_id"] == "00f067aa0ba902b7"


@pytest.mark.parametrize("kind", CLIENTS)
def test_outside_a_request_only_an_active_correlation_travels(
    make_app: MakeApp, service: Service, kind: str
) -> None:
    bundle = make_app()
    with bundle.app.app_context():
        call(kind, bundle.telemetry, f"{service.url}/ok")
        with Correlation(request_id="job-7", trace_id=TRACE_ID).activate():
            call(kind, bundle.telemetry, f"{service.url}/ok")
    first, _, second, second_end = service.rows()
    assert first.request_id not in (None, "job-7")  # the service made its own
    assert "trace_id" not in first.metadata
    assert second.request_id == "job-7"
    assert second_end.metadata["trace_id"] == TRACE_ID


def test_the_configured_header_name_is_used(
    make_app: MakeApp, service: Service
) -> None:
    service.app.config[ConfigVars.REQUEST_ID_HEADER] = "X-Correlation-ID"
    bundle = make_app(**{ConfigVars.REQUEST_ID_HEADER: "X-Correlation-ID"})
    seen: list[str | None] = []

    @service.app.get("/echo")
    def echo() -> str:
        seen.append(request.headers.get("X-Correlation-ID"))
        seen.append(request.headers.get("X-Request-ID"))
        return "ok"

    caller(bundle, "requests", f"{service.url}/echo")
    response = bundle.client().get("/call")
    assert seen == [response.headers["X-Correlation-ID"], None]


@pytest.mark.parametrize("kind", ["requests", "httpx"])
def test_instrument_is_idempotent_and_undone(
    make_app: MakeApp, service: Service, kind: str
) -> None:
    bundle = make_app()
    client: t.Any
    module: t.Any
    if kind == "requests":
        client, module = requests.Session(), telemetry_requests
    else:
        client, module = httpx.Client(), telemetry_httpx
    seen: list[str | None] = []

    @service.app.get("/seen")
    def seen_view() -> tuple[str, int]:
        seen.append(request.headers.get("X-Request-ID"))
        return "down", 503

    @bundle.app.get("/twice")
    def twice() -> str:
        client.get(f"{service.url}/seen", timeout=5)
        return "ok"

    assert module.instrument(client, bundle.telemetry) is client
    assert module.instrument(client, bundle.telemetry, slow_ms=5) is client
    first = bundle.client().get("/twice").headers["X-Request-ID"]
    assert len(events(bundle, EventType.EXTERNAL_CALL_FAIL)) == 1
    module.uninstrument(client)
    module.uninstrument(client)
    bundle.client().get("/twice")
    assert len(events(bundle, EventType.EXTERNAL_CALL_FAIL)) == 1
    assert seen == [first, None]
    assert "send" not in vars(client)
    client.close()


def test_a_broken_recorder_never_reaches_the_call(
    make_app: MakeApp, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_app()

    def broken(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise RuntimeError("telemetry is broken")

    monkeypatch.setattr(bundle.telemetry, "record", broken)
    monkeypatch.setattr(bundle.telemetry, "context", broken)
    with bundle.app.test_request_context():
        for kind in ["requests", "httpx"]:
            assert call(kind, bundle.telemetry, f"{service.url}/unavailable") == 503


@pytest.mark.parametrize(
    ("module", "library", "extra"),
    [(telemetry_requests, "requests", "requests"), (telemetry_httpx, "httpx", "httpx")],
)
def test_a_missing_library_names_the_extra(
    make_app: MakeApp,
    monkeypatch: pytest.MonkeyPatch,
    module: t.Any,
    library: str,
    extra: str,
) -> None:
    bundle = make_app()
    monkeypatch.setitem(sys.modules, library, None)
    with pytest.raises(DidNotEnable, match=rf"flask-telemetry\[{extra}\]"):
        module.instrument(object(), bundle.telemetry)


def test_a_negative_threshold_is_refused(make_app: MakeApp) -> None:
    bundle = make_app()
    with pytest.raises(ValueError, match="slow_ms"):
        telemetry_requests.instrument(requests.Session(), bundle.telemetry, slow_ms=-1)


def test_the_example_apps_shipping_quote(
    clean_url: str, service: Service, closed_port: int
) -> None:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": clean_url,
            "TESTING": True,
            "SHIPPING_URL": service.url,
            ConfigVars.DELIVERY: "sync",
        }
    )
    try:
        with app.app_context():
            upgrade()
        client = app.test_client()
        answer = client.get("/shipping/quote/3")
        assert answer.json == {"product_id": 3, "price_cents": 495}
        (end,) = service.rows()
        assert end.request_id == answer.headers["X-Request-ID"]
        app.config["SHIPPING_URL"] = f"http://127.0.0.1:{closed_port}"
        assert client.get("/shipping/quote/3").status_code == 503
        with app.app_context():
            example_telemetry.flush(5)
            model = example_telemetry.trace_model
            fail = example_db.session.scalars(
                sa.select(model).filter_by(event_type="external_call_fail")
            ).one()
            assert fail.route_name == "shipping.quote"
            assert fail.metadata_["error"] == "ConnectionError"
    finally:
        with app.app_context():
            example_telemetry.shutdown(5)
            example_db.session.remove()
            example_db.engine.dispose()
