"""The writer thread gives the GIL up between slices of a batch's rows."""

from __future__ import annotations

import threading

import pytest

from conftest import MakeApp
from flask_telemetry import ConfigVars, EventType
from flask_telemetry.storage import pacing


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that paused, one entry per pause."""
    seen: list[str] = []
    original = pacing.pause

    def pause() -> None:
        seen.append(threading.current_thread().name)
        original()

    monkeypatch.setattr(pacing, "pause", pause)
    return seen


def test_the_writer_pauses_every_slice_of_a_batch(
    make_app: MakeApp, pauses: list[str]
) -> None:
    """A batch of 300 events: the writer thread pauses every 64 rows (4
    times) while it builds them, validates them and, but for sqlite3, sends
    them; and stores them all."""
    bundle = make_app(
        **{
            ConfigVars.DELIVERY: "async",
            ConfigVars.BATCH_SIZE: 300,
            ConfigVars.FLUSH_INTERVAL: 60,
        }
    )
    with bundle.app.app_context():
        for n in range(299):
            bundle.telemetry.record(EventType.CACHE_MISS, metadata={"n": n})
        assert not pauses  # the request side never pauses
        bundle.telemetry.record(EventType.CACHE_MISS, metadata={"n": 299})
        assert bundle.telemetry.flush(30)
        dialect = bundle.db.engine.dialect.name
    assert len(bundle.rows()) == 300
    assert set(pauses) == {"flask_telemetry-writer"}
    per_step = 300 // pacing.SLICE
    # Building and validating, then sending: PostgreSQL's COPY and the
    # PyMySQL INSERTs pause as they go; sqlite3 binds a statement in C.
    sends = 0 if dialect == "sqlite" else per_step
    assert len(pauses) == 2 * per_step + sends


def test_a_small_batch_never_pauses(make_app: MakeApp, pauses: list[str]) -> None:
    bundle = make_app(**{ConfigVars.DELIVERY: "async"})
    with bundle.app.app_context():
        for n in range(pacing.SLICE - 1):
            bundle.telemetry.record(EventType.CACHE_MISS, metadata={"n": n})
        assert bundle.telemetry.flush(30)
    assert len(bundle.rows()) == pacing.SLICE - 1
    assert pauses == []
