"""The RQ integration: ids travel in ``job.meta``, the worker class records jobs.

The end-to-end tests run ``rq worker --worker-class
flask_telemetry.integrations.rq.Worker`` (forking a work horse per job) as a
real process against the Redis of ``TELEMETRY_TEST_REDIS_URL``; the others
run :class:`~flask_telemetry.integrations.rq.SimpleWorker` in this process,
in burst mode, on queues of their own.
"""

from __future__ import annotations

import re
import typing as t
import uuid
from pathlib import Path

import jobs_app
import pytest
import redis
import rq
from flask import Flask
from flask_migrate import upgrade
from jobs_support import (
    BACKENDS,
    DOWN_REDIS_URL,
    TRACE_ID,
    TRACEPARENT,
    Jobs,
    forget_queue,
    new_request_id,
    redis_url,
    rq_command,
    shared_jobs,
    worker,
)

from flask_telemetry import ConfigVars, Correlation, current_request_id
from flask_telemetry.integrations import rq as telemetry_rq


@pytest.fixture(autouse=True)
def _uninstrumented() -> t.Iterator[None]:
    """Every test ends with the integration undone (jobs_app enables it)."""
    yield
    telemetry_rq.uninstrument()


@pytest.fixture(scope="module", params=BACKENDS)
def jobs(
    request: pytest.FixtureRequest,
    server_databases: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> t.Iterator[Jobs]:
    """A database and a queue of this module's own, on each backend."""
    with shared_jobs(request.param, server_databases, tmp_path_factory) as made:
        yield made


@pytest.fixture(scope="module")
def rq_worker(jobs: Jobs) -> t.Iterator[Jobs]:
    """An RQ worker process (``flask_telemetry.integrations.rq.Worker``)."""
    with worker(rq_command(jobs), jobs, ready="Listening on"):
        yield jobs


# -- end to end, with a worker process ------------------------------------


def test_job_enqueued_in_a_request_carries_its_ids(rq_worker: Jobs) -> None:
    request_id = new_request_id("rq")
    app = rq_worker.app()
    response = app.test_client().get(
        "/enqueue?what=rq",
        headers={"X-Request-ID": request_id, "traceparent": TRACEPARENT},
    )
    assert response.status_code == 200
    rows = rq_worker.rows(request_id, count=3)
    assert [r.event_type for r in rows if r.event_type != "http_request_end"] == [
        "cache_miss",
        "worker_job_end",
    ]
    end = rows[-1] if rows[-1].event_type == "worker_job_end" else rows[-2]
    assert end.request_id == request_id
    assert end.severity == "info"
    assert end.actor_type == "system"
    metadata = dict(end.metadata)
    assert 0 <= metadata.pop("duration_ms") < 10_000
    assert metadata == {
        "trace_id": TRACE_ID,
        "system": "rq",
        "job": "jobs_app.rq_add",
        "job_id": (response.json or {})["rq"],
        "queue": rq_worker.queue,
        "retries": 0,
    }


def test_failing_job_and_its_retry_are_recorded(rq_worker: Jobs) -> None:
    """A job with one retry fails twice: a warning that it will retry, then
    an error; never the exception's message."""
    queue = jobs_app.rq_queue(rq_worker.app())
    corr = Correlation(request_id=new_request_id("retry"))
    with corr.activate():
        queue.enqueue("jobs_app.rq_fail", retry=rq.Retry(max=1))
    first, second = rq_worker.rows(corr.request_id, count=2)
    assert (first.event_type, first.severity) == ("worker_job_fail", "warning")
    assert (second.event_type, second.severity) == ("worker_job_fail", "error")
    assert first.metadata["will_retry"] is True
    assert second.metadata["will_retry"] is False
    assert (first.metadata["retries"], second.metadata["retries"]) == (0, 1)
    for row in (first, second):
        assert row.metadata["exception"] == "ValueError"
        assert "4111" not in str(row.metadata)


def test_enqueue_without_a_worker_keeps_the_ids_in_meta(jobs: Jobs) -> None:
    app = jobs.app(JOBS_QUEUE=f"{jobs.queue}-idle")
    request_id = new_request_id("idle")
    response = app.test_client().get(
        "/enqueue?what=rq",
        headers={"X-Request-ID": request_id, "traceparent": TRACEPARENT},
    )
    assert response.status_code == 200
    job_id = (response.json or {})["rq"]
    job = rq.job.Job.fetch(job_id, connection=redis.Redis.from_url(jobs.redis_url))
    assert job.meta == {
        "telemetry_request_id": request_id,
        "telemetry_trace_id": TRACE_ID,
    }


# -- in this process, with SimpleWorker ------------------------------------


@pytest.fixture
def local(request: pytest.FixtureRequest) -> t.Iterator[tuple[Flask, rq.Queue]]:
    """An app on in-memory SQLite and an RQ queue of this test's own; a
    test's ``config`` mark adds configuration."""
    url = redis_url()
    mark = request.node.get_closest_marker("config")
    app = jobs_app.create_app(
        {
            "TESTING": True,
            "TELEMETRY_DELIVERY": "sync",
            "JOBS_REDIS_URL": url,
            "JOBS_QUEUE": f"ft-local-{uuid.uuid4().hex[:10]}",
            **(mark.kwargs if mark is not None else {}),
        }
    )
    with app.app_context():
        jobs_app.db.create_all()
    queue = jobs_app.rq_queue(app)
    yield app, queue
    queue.connection.close()
    forget_queue(url, queue.name)


def _work(app: Flask, queue: rq.Queue) -> list[t.Any]:
    with app.app_context():
        telemetry_rq.SimpleWorker([queue], connection=queue.connection).work(burst=True)
        jobs_app.telemetry.flush(5)
        model = jobs_app.telemetry.trace_model
        return list(jobs_app.db.session.scalars(jobs_app.db.select(model)))


def test_start_end_fail_and_message(local: tuple[Flask, rq.Queue]) -> None:
    app, queue = local
    telemetry_rq.instrument(
        None, jobs_app.telemetry, record_start=True, include_message=True
    )
    queue.enqueue(jobs_app.rq_add, 1, 2)
    queue.enqueue(jobs_app.rq_fail)
    rows = _work(app, queue)
    assert [r.event_type for r in rows] == [
        "worker_job_start",
        "cache_miss",
        "worker_job_end",
        "worker_job_start",
        "worker_job_fail",
    ]
    # A job enqueued outside any request runs under an id of its own.
    assert rows[0].request_id == rows[1].request_id == rows[2].request_id
    assert rows[3].request_id == rows[4].request_id != rows[0].request_id
    assert re.fullmatch(r"[0-9a-f-]{36}", rows[0].request_id)
    assert rows[4].metadata_["message"] == "card 4111 1111 1111 1111 declined"
    assert current_request_id() is None


@pytest.mark.config(**{ConfigVars.SAMPLE_RATE: 0.0})
def test_sampling_keeps_slow_and_failing_jobs(local: tuple[Flask, rq.Queue]) -> None:
    app, queue = local
    telemetry_rq.instrument(None, jobs_app.telemetry, slow_ms=30)
    queue.enqueue(jobs_app.rq_add, 1, 2)  # routine: sampled out
    queue.enqueue(jobs_app.rq_sleep, 0.05)  # slow: kept
    queue.enqueue(jobs_app.rq_fail)  # failing: kept
    rows = _work(app, queue)
    assert [(r.event_type, r.severity) for r in rows] == [
        ("cache_miss", "info"),
        ("worker_job_end", "warning"),
        ("worker_job_fail", "error"),
    ]
    assert rows[1].metadata_["slow"] is True
    assert rows[1].metadata_["sample_rate"] == rows[2].metadata_["sample_rate"] == 1.0
    with app.app_context():
        assert jobs_app.telemetry.stats()["dropped"]["sampled_out"] == 1


def test_hostile_meta_is_ignored(local: tuple[Flask, rq.Queue]) -> None:
    app, queue = local
    telemetry_rq.instrument(None, jobs_app.telemetry)
    meta = {"telemetry_request_id": "bad id\n", "telemetry_trace_id": "0" * 32}
    queue.enqueue(jobs_app.rq_add, 1, 2, meta=meta)
    queue.enqueue(jobs_app.rq_add, 1, 2, meta={"telemetry_request_id": "good-1"})
    rows = _work(app, queue)
    assert rows[0].request_id == rows[1].request_id != "bad id\n"
    assert "trace_id" not in rows[1].metadata_
    assert [r.request_id for r in rows[2:]] == ["good-1", "good-1"]


def test_instrument_is_idempotent_and_undone(local: tuple[Flask, rq.Queue]) -> None:
    app, queue = local
    telemetry_rq.uninstrument()  # jobs_app.create_app() instrumented it
    original = rq.job.Job.__dict__["create"]
    telemetry_rq.instrument(None, jobs_app.telemetry)
    patched = rq.job.Job.__dict__["create"]
    telemetry_rq.instrument(None, jobs_app.telemetry)
    assert rq.job.Job.__dict__["create"] is patched is not original
    telemetry_rq.uninstrument()
    telemetry_rq.uninstrument()
    assert rq.job.Job.__dict__["create"] is original
    assert not telemetry_rq.is_instrumented()
    with app.test_request_context(headers={"X-Request-ID": "req-1"}):
        app.preprocess_request()
        job = queue.enqueue(jobs_app.rq_add, 1, 2)
    assert job.meta == {}
    # Uninstrumented, the worker class performs jobs and records none.
    events = [r.event_type for r in _work(app, queue)]
    assert events == ["http_request_end", "cache_miss"]


def test_hooks_never_raise_into_the_job(
    local: tuple[Flask, rq.Queue], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, queue = local
    telemetry_rq.instrument(None, jobs_app.telemetry)

    def broken(*args: t.Any, **kwargs: t.Any) -> None:
        raise RuntimeError("telemetry bug")

    with app.test_request_context(headers={"X-Request-ID": "req-2"}):
        app.preprocess_request()
        monkeypatch.setattr(jobs_app.telemetry, "context", broken)
        job = queue.enqueue(jobs_app.rq_sleep, 0)  # the enqueue stands
        monkeypatch.undo()
    assert job.meta == {}
    monkeypatch.setattr(jobs_app.telemetry, "record", broken)
    _work(app, queue)
    assert job.get_status() == rq.job.JobStatus.FINISHED
    assert current_request_id() is None


# -- the example app ---------------------------------------------------------


def test_example_app_enqueues_under_the_admin_request(tmp_path: Path) -> None:
    """A price change enqueues a job; its row carries the change's request id.
    With Redis down the change still succeeds."""
    from example_app import create_app, seed_data
    from example_app.extensions import db, telemetry

    url = redis_url()
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'example.db'}",
            "TESTING": True,
            "TELEMETRY_DELIVERY": "sync",
            "REDIS_URL": url,
            "RQ_QUEUE": f"ft-example-{uuid.uuid4().hex[:10]}",
        }
    )
    queue = rq.Queue(app.config["RQ_QUEUE"], connection=redis.Redis.from_url(url))
    try:
        with app.app_context():
            upgrade()
            seed_data()
        client = app.test_client()
        login = {"username": "root", "password": "correct horse"}
        assert client.post("/auth/login", json=login).status_code == 200
        assert client.post("/auth/stepup", json={"code": "424242"}).status_code == 200
        changed = client.post(
            "/admin/products/1/price",
            json={"price_cents": 2100},
            headers={"X-Request-ID": "example-price-1"},
        )
        assert changed.status_code == 200
        with app.app_context():
            worker = telemetry_rq.SimpleWorker([queue], connection=queue.connection)
            worker.work(burst=True)
            model = telemetry.trace_model
            rows = db.session.scalars(
                db.select(model).filter_by(request_id="example-price-1")
            ).all()
        events = {r.event_type: r.metadata_ for r in rows}
        assert events["worker_job_end"]["job"] == "example_app.jobs.announce_price"
        assert "resource_mutation" in events

        app.config["REDIS_URL"] = DOWN_REDIS_URL
        down = client.post("/admin/products/1/price", json={"price_cents": 2200})
        assert down.status_code == 200
    finally:
        queue.connection.close()
        forget_queue(url, queue.name)
        with app.app_context():
            telemetry.shutdown(5)
            db.session.remove()
            db.engine.dispose()
