"""The extension's contract: init patterns, config, arguments, actors, apps."""

from __future__ import annotations

import enum
import logging
import typing as t

import pytest
from flask import Flask, g
from flask_sqlalchemy import SQLAlchemy

from conftest import Bundle, MakeApp
from flask_telemetry import (
    ActorType,
    ConfigVars,
    EventType,
    Telemetry,
    TelemetryError,
)
from flask_telemetry._config import DEFAULTS


class CheckoutEvent(str, enum.Enum):
    """An application's own vocabulary."""

    #: The basket was paid for.
    CHECKOUT_PAID = "checkout_paid"


def _app(**config: t.Any) -> tuple[Flask, SQLAlchemy]:
    app = Flask("contract")
    app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://", **config)
    return app, SQLAlchemy(app)


def test_defaults_are_set_with_setdefault() -> None:
    app, _ = _app(TELEMETRY_SLOW_REQUEST_MS=250)
    Telemetry(app)
    assert app.config[ConfigVars.SLOW_REQUEST_MS] == 250
    for key, value in DEFAULTS.items():
        if key != ConfigVars.SLOW_REQUEST_MS:
            assert app.config[key] == value
    assert app.config[ConfigVars.DELIVERY] == "async"
    assert app.config[ConfigVars.REQUEST_ID_HEADER] == "X-Request-ID"
    assert app.config[ConfigVars.RETENTION_DAYS] == 7


def test_init_app_twice_is_an_error() -> None:
    app, _ = _app()
    telemetry = Telemetry(app)
    with pytest.raises(RuntimeError, match="already registered"):
        telemetry.init_app(app)
    with pytest.raises(RuntimeError, match="already registered"):
        Telemetry(app)


def test_flask_sqlalchemy_is_required_first() -> None:
    app = Flask("no_db")
    with pytest.raises(RuntimeError, match=r"db\.init_app\(app\)"):
        Telemetry(app)


def test_explicit_db_and_deferred_init() -> None:
    app = Flask("deferred")
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    db = SQLAlchemy()
    telemetry = Telemetry(db=db)
    db.init_app(app)
    telemetry.init_app(app)
    with app.app_context():
        db.create_all()
        telemetry.record(EventType.CACHE_HIT)
        assert telemetry.flush(5)
        assert db.session.query(telemetry.trace_model).count() == 1


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (ConfigVars.DELIVERY, "later", "'sync' or 'async'"),
        (ConfigVars.ENABLED, "yes", "True or False"),
        (ConfigVars.STRICT, 1, "True or False"),
        (ConfigVars.SLOW_REQUEST_MS, -1, ">= 0"),
        (ConfigVars.QUEUE_SIZE, 0, "integer >= 1"),
        (ConfigVars.CONNECT_TIMEOUT_MS, 0, "integer >= 1"),
        (ConfigVars.BATCH_SIZE, 2.5, "integer"),
        (ConfigVars.RETENTION_DAYS, "7", "integer"),
        (ConfigVars.REQUEST_ID_HEADER, "Bad Header", "header name"),
        (ConfigVars.BIND_KEY, "missing", "SQLALCHEMY_BINDS"),
    ],
)
def test_bad_config_fails_at_init_app_naming_the_key(
    key: str, value: object, message: str
) -> None:
    app, _ = _app(**{key: value})
    with pytest.raises(ValueError, match=key) as caught:
        Telemetry(app)
    assert message in str(caught.value)


def test_bad_arguments_are_dropped_counted_and_logged(
    bundle: Bundle, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry = bundle.telemetry
    # Alembic's fileConfig() in an earlier test's migration may have disabled
    # loggers that existed then; this test is about what ours says.
    monkeypatch.setattr(logging.getLogger("flask_telemetry"), "disabled", False)
    caplog.set_level(logging.ERROR, logger="flask_telemetry")
    with bundle.app.app_context():
        telemetry.record("no_such_event")
        telemetry.record(EventType.CACHE_HIT, "loud")
        telemetry.record(EventType.CACHE_HIT, actor_type="robot")
        telemetry.record(EventType.CACHE_HIT, actor_id="7")  # type: ignore[arg-type]
        telemetry.record(EventType.CACHE_HIT, actor_id=True)
        telemetry.record(EventType.CACHE_HIT, metadata=["not", "a", "mapping"])  # type: ignore[arg-type]
        telemetry.record(EventType.CACHE_HIT, metadata={"x": object()})
        telemetry.record(EventType.CACHE_HIT, metadata={"x": float("nan")})
        telemetry.record(["unhashable"])  # type: ignore[arg-type]
        telemetry.record("cache_hit", "debug")  # valid, as strings
        stats = telemetry.stats()
    assert stats["dropped"]["invalid"] == 9
    assert stats["written"] == 1
    assert stats["accepted"] == 10
    assert "Unknown event type 'no_such_event'" in caplog.text
    assert [r.event_type for r in bundle.rows()] == ["cache_hit"]


def test_strict_mode_raises_for_bad_arguments(make_app: MakeApp) -> None:
    bundle = make_app(TELEMETRY_STRICT=True)
    with bundle.app.app_context():
        with pytest.raises(TelemetryError, match="Unknown event type"):
            bundle.telemetry.record("no_such_event")
        with pytest.raises(TelemetryError, match="severity"):
            bundle.telemetry.record(EventType.CACHE_HIT, "loud")
        with pytest.raises(TelemetryError, match="actor_id"):
            bundle.telemetry.record(EventType.CACHE_HIT, actor_id="7")  # type: ignore[arg-type]
        with pytest.raises(TelemetryError, match="JSON"):
            bundle.telemetry.record(EventType.CACHE_HIT, metadata={"x": {1, 2}})
    assert bundle.rows() == []


def test_application_event_types(make_app: MakeApp) -> None:
    app = Flask("own_events")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=make_app().app.config["SQLALCHEMY_DATABASE_URI"],
        TELEMETRY_DELIVERY="sync",
    )
    db = SQLAlchemy(app)
    telemetry = Telemetry(app, event_types=[CheckoutEvent])
    with app.app_context():
        telemetry.record(CheckoutEvent.CHECKOUT_PAID, metadata={"cents": 1999})
        telemetry.record("checkout_paid")
        telemetry.record("checkout_refunded")
        assert telemetry.stats()["written"] == 2
        assert telemetry.stats()["dropped"]["invalid"] == 1
        rows = db.session.query(telemetry.trace_model).all()
        assert {r.event_type for r in rows} == {"checkout_paid"}
        db.session.query(telemetry.trace_model).delete()
        db.session.commit()
        db.engine.dispose()


def test_event_types_must_be_str_enums() -> None:
    class Plain(enum.Enum):
        A = "a"

    class Loud(str, enum.Enum):
        A = "Not Snake"

    with pytest.raises(ValueError, match="str Enums"):
        Telemetry(event_types=[Plain])
    with pytest.raises(ValueError, match="lower_snake_case"):
        Telemetry(event_types=[Loud])


def test_actor_in_request_outside_request_and_from_loader(bundle: Bundle) -> None:
    telemetry, app = bundle.telemetry, bundle.app

    @telemetry.actor_loader
    def actor() -> tuple[ActorType, int] | None:
        user = g.get("user_id")
        return (ActorType.USER, user) if user is not None else None

    @app.get("/as/<int:user_id>")
    def as_user(user_id: int) -> str:
        if user_id:
            g.user_id = user_id
        telemetry.record(EventType.DATA_QUERY_EXECUTED)
        return "ok"

    client = bundle.client()
    client.get("/as/0")
    client.get("/as/42")
    with app.app_context():
        telemetry.record(EventType.WORKER_JOB_END)
        telemetry.record(
            EventType.WORKER_JOB_END, actor_type=ActorType.SERVICE, actor_id=3
        )
    actors = [(r.event_type, r.actor_type, r.actor_id) for r in bundle.rows()]
    assert actors == [
        ("data_query_executed", "anonymous", None),
        ("http_request_end", "anonymous", None),
        ("data_query_executed", "user", 42),
        ("http_request_end", "user", 42),
        ("worker_job_end", "system", None),
        ("worker_job_end", "service", 3),
    ]


def test_failing_actor_loader_does_not_break_the_request(bundle: Bundle) -> None:
    @bundle.telemetry.actor_loader
    def actor() -> tuple[ActorType, int] | None:
        raise LookupError("session store down")

    @bundle.app.get("/")
    def index() -> str:
        bundle.telemetry.record(EventType.CACHE_HIT)
        return "ok"

    assert bundle.client().get("/").text == "ok"
    assert {r.actor_type for r in bundle.rows()} == {"anonymous"}


def test_request_end_event(bundle: Bundle) -> None:
    app = bundle.app
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/fine")
    def fine() -> tuple[str, int]:
        return "created", 201

    @app.get("/broken")
    def broken() -> str:
        raise KeyError("secret detail")

    client = bundle.client()
    client.get("/fine")
    assert client.get("/broken").status_code == 500
    client.get("/nowhere")
    fine_row, broken_row, missing_row = bundle.rows()
    assert fine_row.event_type == "http_request_end"
    assert fine_row.severity == "info"
    assert fine_row.route_name == "fine"
    assert fine_row.metadata["method"] == "GET"
    assert fine_row.metadata["status"] == 201
    assert fine_row.metadata["duration_ms"] >= 0
    assert broken_row.severity == "error"
    assert broken_row.metadata["status"] == 500
    assert broken_row.metadata["exception"] == "KeyError"
    assert "secret detail" not in str(broken_row.metadata)
    assert missing_row.metadata["status"] == 404
    assert missing_row.route_name is None


def test_slow_request_is_a_warning(make_app: MakeApp) -> None:
    bundle = make_app(TELEMETRY_SLOW_REQUEST_MS=0)

    @bundle.app.get("/slow")
    def slow() -> str:
        return "ok"

    bundle.client().get("/slow")
    (row,) = bundle.rows()
    assert row.severity == "warning"
    assert row.metadata["slow"] is True


def test_disabled_records_nothing(make_app: MakeApp) -> None:
    bundle = make_app(TELEMETRY_ENABLED=False)

    @bundle.app.get("/")
    def index() -> str:
        bundle.telemetry.record(EventType.CACHE_HIT)
        return "ok"

    response = bundle.client().get("/")
    assert response.text == "ok"
    assert "X-Request-ID" not in response.headers
    assert bundle.rows() == []


def test_record_requests_off_keeps_explicit_events(make_app: MakeApp) -> None:
    bundle = make_app(TELEMETRY_RECORD_REQUESTS=False)

    @bundle.app.get("/")
    def index() -> str:
        bundle.telemetry.record(EventType.CACHE_HIT)
        return "ok"

    bundle.client().get("/")
    assert [r.event_type for r in bundle.rows()] == ["cache_hit"]


def test_several_apps_in_one_process(make_app: MakeApp) -> None:
    first, second = make_app(), make_app()
    with first.app.app_context():
        first.telemetry.record(EventType.CACHE_HIT)
    with second.app.app_context():
        second.telemetry.record(EventType.CACHE_MISS)
        second.telemetry.record(EventType.CACHE_MISS)
    with first.app.app_context():
        assert first.telemetry.stats()["written"] == 1
    with second.app.app_context():
        assert second.telemetry.stats()["written"] == 2


def test_one_instance_on_several_apps() -> None:
    telemetry = Telemetry()
    apps = []
    for _ in range(2):
        app, db = _app(TELEMETRY_DELIVERY="sync")
        telemetry.init_app(app)
        with app.app_context():
            db.create_all()
        apps.append((app, db))
    for index, (app, db) in enumerate(apps):
        with app.app_context():
            for _ in range(index + 1):
                telemetry.record(EventType.CACHE_HIT)
            assert telemetry.stats()["written"] == index + 1
            assert db.session.query(telemetry.trace_model).count() == index + 1
    # Outside an app context the app is ambiguous: nothing is recorded, and
    # each app counts the drop, since the event could have been its own.
    telemetry.record(EventType.CACHE_HIT)
    assert telemetry.stats() == {}
    for index, (app, _) in enumerate(apps):
        with app.app_context():
            stats = telemetry.stats()
            assert stats["accepted"] == index + 2
            assert stats["written"] == index + 1
            assert stats["dropped"]["no_app"] == 1


def test_hooks_survive_a_request_context_without_setup(bundle: Bundle) -> None:
    """teardown runs for test_request_context even though before_request did not."""
    with bundle.app.test_request_context("/"):
        bundle.telemetry.record(EventType.CACHE_HIT)
    rows = bundle.rows()
    assert [r.event_type for r in rows] == ["cache_hit"]
    assert rows[0].request_id is None
