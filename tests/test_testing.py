"""flask_telemetry.testing: the in-memory capture and the pytest fixture."""

from __future__ import annotations

import datetime as dt
import enum
import os
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from conftest import Bundle, MakeApp
from flask_telemetry import ActorType, ConfigVars, EventType, Severity, Telemetry
from flask_telemetry.storage.row import TraceEvent
from flask_telemetry.testing import TelemetryCapture, capture

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "capture"


class ShopEvent(str, enum.Enum):
    """An application's own vocabulary."""

    CHECKOUT = "checkout"


def _offline_app(tmp_path: Path, **config: t.Any) -> tuple[Flask, Telemetry]:
    """An app whose database cannot be opened: any write would fail."""
    app = Flask("offline")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'missing' / 'app.db'}",
        **config,
    )
    SQLAlchemy(app)
    telemetry = Telemetry(app, event_types=[ShopEvent])

    @app.get("/items/<int:item>")
    def item(item: int) -> str:
        telemetry.record(EventType.CACHE_MISS, metadata={"key": item, "tier": "l1"})
        return "ok"

    return app, telemetry


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_capture_needs_no_database(tmp_path: Path, delivery: str) -> None:
    app, telemetry = _offline_app(tmp_path, **{ConfigVars.DELIVERY: delivery})
    with capture(app) as captured:
        response = app.test_client().get("/items/3", headers={"X-Request-ID": "r-1"})
        with app.app_context():
            telemetry.record(ShopEvent.CHECKOUT, Severity.NOTICE, actor_id=9)
            assert telemetry.flush(1)
            stats = telemetry.stats()
    assert response.status_code == 200
    assert captured.event_types == ["cache_miss", "http_request_end", "checkout"]
    miss = captured.events[0]
    assert (miss.request_id, miss.route_name) == ("r-1", "item")
    assert miss.metadata == {"key": 3, "tier": "l1"}
    assert miss.occurred_at.tzinfo is not None
    checkout = captured.events[2]
    assert (checkout.actor_type, checkout.actor_id) == ("system", 9)
    assert checkout.request_id is None
    assert (stats["accepted"], stats["written"], stats["queue_depth"]) == (3, 3, 0)
    assert stats["delivery"] == "TelemetryCapture"
    assert not (tmp_path / "missing").exists()


def test_events_the_writer_would_reject_are_kept_apart(tmp_path: Path) -> None:
    app, telemetry = _offline_app(tmp_path)
    # A row past the recorder's checks that the storage schema refuses, as
    # the writer would: an actor id beyond BIGINT.
    row = TraceEvent(
        actor_type="system",
        actor_id=2**63,
        event_type="cache_miss",
        severity="info",
        occurred_at=dt.datetime.now(dt.UTC),
    )
    with capture(app) as captured, app.app_context():
        app.extensions["telemetry"].delivery.keep(row)
        stats = telemetry.stats()
    assert captured.events == []
    [(event, errors)] = captured.rejected
    assert event is row
    assert "actor_id" in errors
    assert stats["dropped"]["invalid"] == 1
    with pytest.raises(AssertionError, match="Rejected by the schema") as info:
        captured.assert_recorded(EventType.CACHE_MISS)
    assert "cache_miss (info, system 9223372036854775808)" in str(info.value)


def test_bad_arguments_never_reach_the_capture(tmp_path: Path) -> None:
    app, telemetry = _offline_app(tmp_path)
    with capture(app) as captured, app.app_context():
        telemetry.record("no_such_event")
        telemetry.record(EventType.CACHE_HIT, "loud")
    assert captured.events == []
    assert captured.rejected == []


def test_strict_mode_still_raises_under_capture(tmp_path: Path) -> None:
    from flask_telemetry import TelemetryError

    app, telemetry = _offline_app(tmp_path, **{ConfigVars.STRICT: True})
    with capture(app), app.app_context(), pytest.raises(TelemetryError):
        telemetry.record("no_such_event")


def _filled(tmp_path: Path) -> TelemetryCapture:
    app, telemetry = _offline_app(tmp_path)
    with capture(app) as captured, app.app_context():
        telemetry.record(EventType.CACHE_MISS, metadata={"key": "a", "tier": "l1"})
        telemetry.record(EventType.CACHE_MISS, metadata={"key": "b", "tier": "l1"})
        telemetry.record(
            EventType.RESOURCE_MUTATION,
            Severity.WARNING,
            actor_type=ActorType.ADMIN,
            actor_id=7,
        )
    return captured


def test_assert_recorded_matches_a_subset_of_metadata(tmp_path: Path) -> None:
    captured = _filled(tmp_path)
    event = captured.assert_recorded(EventType.CACHE_MISS, metadata={"key": "b"})
    assert event.metadata == {"key": "b", "tier": "l1"}
    captured.assert_recorded("cache_miss", metadata={"tier": "l1"}, count=2)
    captured.assert_recorded(
        EventType.RESOURCE_MUTATION, "warning", actor_type=ActorType.ADMIN, actor_id=7
    )
    assert captured.find(EventType.RESOURCE_MUTATION, actor_id=None) == []
    assert len(captured.find(severity=Severity.INFO)) == 2
    captured.assert_not_recorded(EventType.CACHE_HIT)
    captured.assert_not_recorded(EventType.CACHE_MISS, metadata={"key": "c"})


def test_failure_messages_say_what_was_recorded_and_why_not(tmp_path: Path) -> None:
    captured = _filled(tmp_path)
    with pytest.raises(AssertionError) as info:
        captured.assert_recorded(EventType.CACHE_MISS, metadata={"key": "c", "n": 1})
    message = str(info.value)
    assert message.startswith("No cache_miss metadata ⊇ {'key': 'c', 'n': 1} event")
    assert "Recorded events (3):" in message
    assert "metadata['key'] is 'a', expected 'c'" in message
    assert "metadata has no key 'n'" in message
    assert "resource_mutation (warning, admin 7)" in message

    with pytest.raises(AssertionError, match=r"Expected 1 cache_miss .* found 2"):
        captured.assert_recorded(EventType.CACHE_MISS, count=1)
    with pytest.raises(AssertionError, match="actor_id is 7, expected 8"):
        captured.assert_recorded(EventType.RESOURCE_MUTATION, actor_id=8)
    with pytest.raises(AssertionError, match=r"Expected no cache_miss .* found 1"):
        captured.assert_not_recorded(EventType.CACHE_MISS, metadata={"key": "a"})
    with pytest.raises(TypeError, match="Unknown event field"):
        captured.find(EventType.CACHE_MISS, colour="red")


def test_clear_forgets_everything(tmp_path: Path) -> None:
    captured = _filled(tmp_path)
    captured.clear()
    assert captured.events == []
    with pytest.raises(AssertionError, match=r"Recorded events \(0\):\n  \(none\)"):
        captured.assert_recorded(EventType.CACHE_MISS)


def test_delivery_is_restored_after_the_capture(make_app: MakeApp) -> None:
    bundle: Bundle = make_app()
    with bundle.app.app_context():
        with capture(bundle.app) as outer:
            bundle.telemetry.record(EventType.CACHE_HIT)
            with capture(bundle.app) as inner:
                bundle.telemetry.record(EventType.CACHE_MISS)
            bundle.telemetry.record(EventType.DB_QUERY_SLOW)
        bundle.telemetry.record(EventType.EXTERNAL_CALL_SLOW)
    assert inner.event_types == ["cache_miss"]
    assert outer.event_types == ["cache_hit", "db_query_slow"]
    assert [r.event_type for r in bundle.rows()] == ["external_call_slow"]


def test_capture_restores_the_delivery_when_the_block_raises(
    make_app: MakeApp,
) -> None:
    bundle = make_app()
    with pytest.raises(ZeroDivisionError), capture(bundle.app):
        1 / 0  # noqa: B018
    with bundle.app.app_context():
        bundle.telemetry.record(EventType.CACHE_HIT)
    assert [r.event_type for r in bundle.rows()] == ["cache_hit"]


def test_capture_needs_telemetry_on_the_app() -> None:
    with pytest.raises(RuntimeError, match="not initialised"), capture(Flask("bare")):
        pass


def test_fixture_comes_from_the_entry_point(
    client: FlaskClient, telemetry_capture: TelemetryCapture, bundle: Bundle
) -> None:
    """The suite's own ``app`` fixture feeds the plugin's ``telemetry_capture``."""
    client.get("/missing")
    event = telemetry_capture.assert_recorded(EventType.HTTP_REQUEST_END)
    assert event.metadata is not None
    assert event.metadata["status"] == 404
    with bundle.app.app_context():
        engine = bundle.db.engines[None]
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(bundle.traces))
            assert stored.scalar() == 0


def _run_pytest(suite: Path) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``suite`` in a child process, outside this session's plugins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error"],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_documented_example_suite_passes(tmp_path: Path) -> None:
    """The application test in docs/testing.rst runs as a user would run it."""
    suite = tmp_path / "shop"
    shutil.copytree(EXAMPLE, suite)
    result = _run_pytest(suite)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_documented_example_failure_is_readable(tmp_path: Path) -> None:
    suite = tmp_path / "shop"
    shutil.copytree(EXAMPLE, suite)
    test = suite / "test_shop.py"
    test.write_text(test.read_text().replace('"sku-1"}, count=1', '"sku-2"}'))
    result = _run_pytest(suite)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "No cache_miss metadata ⊇ {'key': 'sku-2'} event" in result.stdout
    assert "metadata['key'] is 'sku-1', expected 'sku-2'" in result.stdout
