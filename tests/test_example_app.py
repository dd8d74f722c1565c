"""The example app's auth flows work whatever happens to telemetry."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from example_app import create_app, seed_data
from example_app.extensions import db, telemetry

UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:9/none"


_made: list[Flask] = []


def _make(db_url: str, **config: t.Any) -> Flask:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "TESTING": True,
            "TELEMETRY_MAX_RETRIES": 0,
            **config,
        }
    )
    with app.app_context():
        upgrade()
        seed_data()
    _made.append(app)
    return app


@pytest.fixture
def example_url(clean_url: str) -> t.Iterator[str]:
    """A database for the example app; its apps are shut down afterwards."""
    yield clean_url
    while _made:
        with _made.pop().app_context():
            telemetry.shutdown(5)
            db.session.remove()
            for bound in db.engines.values():
                bound.dispose()


def _drive(app: Flask) -> None:
    """Sign in, fail and pass step-up, change a price, read it back."""
    client = app.test_client()
    bad = client.post("/auth/login", json={"username": "root", "password": "nope"})
    assert bad.status_code == 401
    login = client.post(
        "/auth/login", json={"username": "root", "password": "correct horse"}
    )
    assert login.status_code == 200
    assert login.json == {"user": "root", "stepup_required": True}
    assert (
        client.post("/admin/products/1/price", json={"price_cents": 5}).status_code
        == 401
    )
    assert client.post("/auth/stepup", json={"code": "000000"}).status_code == 403
    assert client.post("/auth/stepup", json={"code": "424242"}).status_code == 200
    changed = client.post("/admin/products/1/price", json={"price_cents": 1999})
    assert changed.status_code == 200
    assert client.get("/products/1").json["price_cents"] == 1999  # type: ignore[index]


def test_flows_record_the_auth_events(example_url: str) -> None:
    app = _make(example_url, TELEMETRY_DELIVERY="async")
    _drive(app)
    with app.app_context():
        assert telemetry.flush(10)
        model = telemetry.trace_model
        rows = db.session.scalars(sa.select(model).order_by(model.id)).all()
        events = [r.event_type for r in rows if r.event_type != "http_request_end"]
        assert events == [
            "auth_login_failure",
            "auth_login_success",
            "auth_stepup_failure",
            "auth_stepup_success",
            "resource_mutation",
            "cache_miss",
        ]
        mutation = next(r for r in rows if r.event_type == "resource_mutation")
        assert (mutation.actor_type, mutation.actor_id) == ("admin", 2)
        assert mutation.metadata_["new"] == 1999
        assert all("correct horse" not in str(r.metadata_) for r in rows)


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_flows_work_with_the_table_dropped(example_url: str, delivery: str) -> None:
    app = _make(example_url, TELEMETRY_DELIVERY=delivery)
    with app.app_context():
        telemetry.trace_model.__table__.drop(db.engine)
    _drive(app)
    with app.app_context():
        telemetry.flush(10)
        stats = telemetry.stats()
        assert stats["written"] == 0
        assert stats["dropped"]["storage_error"] + stats["dropped"]["breaker_open"] > 0


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_flows_work_with_the_telemetry_database_unreachable(
    example_url: str, delivery: str
) -> None:
    app = _make(
        example_url,
        TELEMETRY_DELIVERY=delivery,
        TELEMETRY_BIND_KEY="telemetry",
        SQLALCHEMY_BINDS={"telemetry": UNREACHABLE},
    )
    _drive(app)
    with app.app_context():
        telemetry.flush(10)
        stats = telemetry.stats()
        assert stats["written"] == 0
        assert (
            stats["accepted"] == sum(stats["dropped"].values()) + stats["queue_depth"]
        )


def test_the_demo_login_opens_the_dashboard_once_and_locally(
    example_url: str,
) -> None:
    """``make serve``'s printed link: once, from the loopback address only."""
    app = _make(example_url, DEMO_LOGIN_TOKEN="t0ken")
    local = {"REMOTE_ADDR": "127.0.0.1"}
    client = app.test_client()
    assert client.get("/_telemetry/").status_code == 404
    remote = client.get(
        "/auth/demo-login?token=t0ken", environ_base={"REMOTE_ADDR": "192.0.2.7"}
    )
    assert remote.status_code == 404
    wrong = client.get("/auth/demo-login?token=guess", environ_base=local)
    assert wrong.status_code == 404
    signed = client.get("/auth/demo-login?token=t0ken", environ_base=local)
    assert signed.status_code == 302
    assert signed.headers["Location"] == "/_telemetry/"
    assert client.get("/_telemetry/").status_code == 200
    again = app.test_client().get("/auth/demo-login?token=t0ken", environ_base=local)
    assert again.status_code == 404  # used up


def test_without_a_token_there_is_no_demo_login(example_url: str) -> None:
    app = _make(example_url)
    client = app.test_client()
    assert client.get("/auth/demo-login?token=").status_code == 404
    assert client.get("/auth/demo-login?token=None").status_code == 404
