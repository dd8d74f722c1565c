"""The connection budget of one worker, counted on the real server.

Telemetry's connections are told apart by ``application_name`` (a name of
the test's own, given through the engine's ``connect_args``, which
telemetry's own pool copies), and counted in ``pg_stat_activity``: busy,
idle past :confval:`TELEMETRY_IDLE_DISCONNECT_S`, and while the database
cannot be reached.
"""

from __future__ import annotations

import time
import typing as t
import uuid

import pytest
import sqlalchemy as sa

from conftest import MakeApp, server_url
from flask_telemetry import ConfigVars, EventType
from pgbouncer_support import connections

pytestmark = pytest.mark.slow


@pytest.fixture
def backend() -> str:
    """PostgreSQL only: ``pg_stat_activity`` is the count."""
    from conftest import require_backend

    require_backend("postgresql")
    return "postgresql"


def _wait_for(count: t.Callable[[], int], want: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while True:
        seen = count()
        if seen == want or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


@pytest.mark.parametrize("delivery", ["async", "sync"])
def test_idle_worker_closes_its_connection_then_reopens(
    make_app: MakeApp, db_url: str, delivery: str
) -> None:
    name = f"ft-idle-{uuid.uuid4().hex[:8]}"
    bundle = make_app(
        **{
            ConfigVars.DELIVERY: delivery,
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.FLUSH_INTERVAL: 0.05,
            ConfigVars.IDLE_DISCONNECT_S: 0.5,
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"application_name": name}},
        }
    )
    app, telemetry = bundle.app, bundle.telemetry
    with app.app_context():
        bundle.db.engine.dispose()  # the app's own connection: not counted

        def count() -> int:
            return connections(db_url, name)

        assert count() == 0
        # Busy: events every 100 ms keep the connection (idle never reached).
        for i in range(8):
            telemetry.record(EventType.CACHE_MISS, metadata={"i": i})
            assert telemetry.flush(5)
            time.sleep(0.1)
            assert count() == 1
        # Quiet past the idle time: no connection left.
        assert _wait_for(count, 0, 3) == 0
        # The next event opens one again and is stored.
        telemetry.record(EventType.CACHE_MISS, metadata={"i": "again"})
        assert telemetry.flush(5)
        assert count() == 1
        stats = telemetry.stats()
    assert stats["written"] == 9
    assert sum(stats["dropped"].values()) == 0


def test_idle_disconnect_none_keeps_the_connection(
    make_app: MakeApp, db_url: str
) -> None:
    name = f"ft-keep-{uuid.uuid4().hex[:8]}"
    bundle = make_app(
        **{
            ConfigVars.DELIVERY: "async",
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.FLUSH_INTERVAL: 0.05,
            ConfigVars.IDLE_DISCONNECT_S: None,
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"application_name": name}},
        }
    )
    with bundle.app.app_context():
        bundle.db.engine.dispose()
        bundle.telemetry.record(EventType.CACHE_MISS)
        assert bundle.telemetry.flush(5)
        time.sleep(1.0)
        assert connections(db_url, name) == 1


def test_no_connection_held_while_the_database_refuses_connections(
    make_app: MakeApp, db_url: str
) -> None:
    """An outage (the database refuses every login, the open connection is
    cut) holds no connection; events are dropped and counted; the writer
    reconnects once the database is back, and lets go once quiet again."""
    name = f"ft-out-{uuid.uuid4().hex[:8]}"
    database = sa.make_url(db_url).database
    server = server_url("postgresql")
    assert server is not None
    bundle = make_app(
        **{
            ConfigVars.DELIVERY: "async",
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.FLUSH_INTERVAL: 0.05,
            ConfigVars.MAX_RETRIES: 0,
            ConfigVars.BREAKER_COOLDOWN: 0.2,
            ConfigVars.IDLE_DISCONNECT_S: 0.5,
            "SQLALCHEMY_ENGINE_OPTIONS": {
                "connect_args": {"application_name": name, "connect_timeout": 2}
            },
        }
    )
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    telemetry = bundle.telemetry
    try:
        with bundle.app.app_context():
            bundle.db.engine.dispose()
            telemetry.record(EventType.CACHE_MISS)
            assert telemetry.flush(5)
            assert connections(server, name) == 1
            with admin.connect() as conn:
                conn.exec_driver_sql(
                    f"ALTER DATABASE {database} WITH ALLOW_CONNECTIONS false"
                )
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE application_name = '{name}'"
                )
            for i in range(20):
                telemetry.record(EventType.CACHE_MISS, metadata={"i": i})
                time.sleep(0.02)
                assert connections(server, name) == 0
            assert telemetry.flush(10)
            down = telemetry.stats()
            with admin.connect() as conn:
                conn.exec_driver_sql(
                    f"ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true"
                )
            deadline = time.monotonic() + 10
            while telemetry.stats()["written"] < 2 and time.monotonic() < deadline:
                telemetry.record(EventType.CACHE_MISS, metadata={"i": "back"})
                telemetry.flush(5)
                time.sleep(0.1)
            back = telemetry.stats()
            assert connections(server, name) == 1
            # Quiet again after the outage: the connection it reopened closes.
            assert _wait_for(lambda: connections(server, name), 0, 3) == 0
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f"ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true"
            )
        admin.dispose()
    assert down["written"] == 1
    assert sum(down["dropped"].values()) == 20
    assert back["written"] >= 2
    assert back["accepted"] == back["written"] + sum(back["dropped"].values())
