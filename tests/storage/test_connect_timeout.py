"""A telemetry database that accepts connections but never answers."""

from __future__ import annotations

import socket
import threading
import time
import typing as t

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import EventType, Telemetry


@pytest.fixture
def silent_port() -> t.Iterator[int]:
    """A port whose connections complete in the kernel and then hear nothing."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)  # never accepted: the handshake waits for a greeting
    yield server.getsockname()[1]
    server.close()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:{port}/none",
        "mysql+pymysql://root@127.0.0.1:{port}/none",
    ],
)
def test_sync_record_waits_one_deadline_for_a_silent_server(
    silent_port: int, url: str
) -> None:
    app = Flask("silent")
    app.config.update(
        SQLALCHEMY_DATABASE_URI="sqlite://",
        SQLALCHEMY_BINDS={"telemetry": url.format(port=silent_port)},
        TELEMETRY_BIND_KEY="telemetry",
        TELEMETRY_DELIVERY="sync",
        TELEMETRY_CONNECT_TIMEOUT_MS=2000,
        TELEMETRY_SYNC_DEADLINE_MS=500,
        TELEMETRY_BREAKER_THRESHOLD=5,
    )
    db = SQLAlchemy(app)
    telemetry = Telemetry(app)
    waits: list[float] = []

    def record_four() -> None:
        with app.app_context():
            for _ in range(4):
                started = time.perf_counter()
                telemetry.record(EventType.CACHE_MISS)
                waits.append(time.perf_counter() - started)

    # In a thread, so that a regression (a connect that waits for ever) fails
    # this test instead of hanging the suite.
    worker = threading.Thread(target=record_four, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), f"record() still waiting after 30 s: {waits}"
    with app.app_context():
        # The writer's connect attempt ends at the connect timeout (libpq
        # waits at least 2 s); the events that did not wait are then counted.
        assert telemetry.flush(10)
        stats = telemetry.stats()
        for engine in db.engines.values():
            engine.dispose()
    # The first record() waits the deadline, not the connect timeout; then the
    # database is suspect and the others do not wait at all.
    assert 0.4 < waits[0] < 0.9, waits
    assert all(wait < 0.1 for wait in waits[1:]), waits
    assert sum(waits) < 1.0, waits
    # The connect attempt was a timeout: the breaker opened at once.
    assert stats["dropped"]["storage_error"] == 1
    assert stats["dropped"]["breaker_open"] == 3
    assert stats["accepted"] == 4
    assert stats["queue_depth"] == 0
