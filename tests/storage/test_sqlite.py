"""SQLite specifics: one writer at a time, and one shared in-memory connection."""

from __future__ import annotations

import time
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import EventType, Telemetry

AppParts = tuple[Flask, SQLAlchemy, Telemetry, type[t.Any]]


def _item_app(uri: str, **config: t.Any) -> AppParts:
    """An app with one table of its own (``Item``) and telemetry, tables made."""
    app = Flask("sqlite_app")
    app.config.update(SQLALCHEMY_DATABASE_URI=uri, **config)
    db = SQLAlchemy(app)

    class Item(db.Model):  # type: ignore[name-defined, misc]
        id = sa.Column(sa.Integer, primary_key=True)

    telemetry = Telemetry(app)
    with app.app_context():
        db.create_all()
    return app, db, telemetry, Item


@pytest.fixture
def memory_app() -> t.Iterator[AppParts]:
    # async is asked for, but an in-memory database makes delivery synchronous.
    app, db, telemetry, item = _item_app("sqlite://", TELEMETRY_DELIVERY="async")
    yield app, db, telemetry, item
    with app.app_context():
        db.engine.dispose()


def _count(db: SQLAlchemy, model: t.Any) -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def test_in_memory_never_commits_the_apps_pending_work(
    memory_app: AppParts,
) -> None:
    app, db, telemetry, item = memory_app
    with app.app_context():
        db.session.add(item())
        db.session.flush()  # the app's transaction is open on the shared connection
        telemetry.record(EventType.RESOURCE_MUTATION)
        assert telemetry.stats()["queue_depth"] == 1  # held, not committed
        db.session.rollback()
        assert _count(db, item) == 0  # telemetry did not commit the app's row
        assert telemetry.flush(1)
        assert _count(db, telemetry.trace_model) == 1
        assert telemetry.stats()["delivery"] == "SyncDelivery"


def test_in_memory_app_commit_still_lands(
    memory_app: AppParts,
) -> None:
    app, db, telemetry, item = memory_app
    with app.app_context():
        db.session.add(item())
        db.session.flush()
        telemetry.record(EventType.RESOURCE_MUTATION)
        db.session.commit()
        telemetry.record(EventType.CACHE_HIT)  # idle connection: both written now
        assert telemetry.stats()["queue_depth"] == 0
        assert _count(db, item) == 1
        assert _count(db, telemetry.trace_model) == 2
        stats = telemetry.stats()
        assert stats["accepted"] == stats["written"] == 2


def test_sync_does_not_wait_out_the_busy_timeout(tmp_path: t.Any) -> None:
    """The app holds SQLite's write lock: sync telemetry gives up after
    TELEMETRY_LOCK_TIMEOUT_MS (not the driver's 5 s), drops and counts."""
    app, db, telemetry, item = _item_app(
        f"sqlite:///{tmp_path / 'locked.db'}",
        TELEMETRY_DELIVERY="sync",
        TELEMETRY_LOCK_TIMEOUT_MS=100,
        TELEMETRY_BREAKER_COOLDOWN=0.2,
    )
    with app.app_context():
        db.session.add(item())
        db.session.flush()  # write lock held by the app's connection
        started = time.perf_counter()
        telemetry.record(EventType.RESOURCE_MUTATION)
        waited = time.perf_counter() - started
        db.session.commit()
        assert waited < 1.0
        stats = telemetry.stats()
        assert stats["dropped"]["storage_error"] == 1
        # The pooled connection's busy timeout is the driver's again afterwards.
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        # A timeout opened the breaker at once: nothing is tried until the
        # cool-down has passed, and then the next event is stored.
        assert telemetry.stats()["breaker"] == "open"
        time.sleep(0.3)
        telemetry.record(EventType.RESOURCE_MUTATION)
        assert telemetry.stats()["written"] == 1
        db.engine.dispose()


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_a_failed_commit_leaves_no_lock_behind(tmp_path: t.Any, delivery: str) -> None:
    """An INSERT whose commit fails (a reader holds the database) is rolled
    back: telemetry's pooled connection keeps no transaction and no lock, so
    the application's next write goes through."""
    app, db, telemetry, item = _item_app(
        f"sqlite:///{tmp_path / 'locked.db'}",
        TELEMETRY_DELIVERY=delivery,
        TELEMETRY_LOCK_TIMEOUT_MS=100,
        TELEMETRY_MAX_RETRIES=0,
    )
    with app.app_context():
        db.session.add_all([item(), item()])
        db.session.commit()
        reader = db.engine.connect()
        rows = reader.execute(sa.select(item.id))
        rows.fetchone()  # a read under way: its lock blocks any commit
        telemetry.record(EventType.CACHE_MISS)
        assert telemetry.flush(5)
        assert telemetry.stats()["dropped"]["storage_error"] == 1
        rows.close()
        reader.close()
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout = 200")
            conn.execute(sa.insert(item))
            conn.commit()
        assert _count(db, item) == 3
        db.engine.dispose()
