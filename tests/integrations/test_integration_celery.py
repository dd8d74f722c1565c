"""The Celery integration: ids travel with tasks, workers record how they end.

The end-to-end tests run a real worker process (``--pool=solo``) against
the real Redis of ``TELEMETRY_TEST_REDIS_URL`` on a database both processes
see; the others run tasks eagerly in this process.
"""

from __future__ import annotations

import logging
import re
import time
import typing as t
from pathlib import Path

import jobs_app
import pytest
from celery import signals  # type: ignore[import-untyped]
from flask import Flask
from jobs_support import (
    BACKENDS,
    DOWN_REDIS_URL,
    TRACE_ID,
    TRACEPARENT,
    Jobs,
    celery_command,
    new_request_id,
    rq_command,
    shared_jobs,
    worker,
)

from flask_telemetry import ConfigVars, Correlation, current_request_id
from flask_telemetry.integrations import celery as telemetry_celery


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
def celery_worker(jobs: Jobs) -> t.Iterator[Jobs]:
    """A Celery worker process (solo pool) on the module's queue and database."""
    with worker(celery_command(jobs), jobs, ready="ready."):
        yield jobs


@pytest.fixture(scope="module")
def rq_worker(jobs: Jobs) -> t.Iterator[Jobs]:
    """An RQ worker process (``flask_telemetry.integrations.rq.Worker``)."""
    with worker(rq_command(jobs), jobs, ready="Listening on"):
        yield jobs


@pytest.fixture(autouse=True)
def _uninstrumented() -> t.Iterator[None]:
    """Every test ends with the integration undone (jobs_app enables it)."""
    yield
    for celery_app in list(telemetry_celery._instrumented):
        telemetry_celery.uninstrument(celery_app)


# -- end to end, with a worker process ------------------------------------


def test_request_ids_travel_to_both_workers(
    celery_worker: Jobs, rq_worker: Jobs
) -> None:
    """One request enqueues a Celery task and an RQ job; both workers' rows
    carry its request id and trace id, with durations."""
    request_id = new_request_id("both")
    app = celery_worker.app()
    response = app.test_client().get(
        "/enqueue?what=celery,rq",
        headers={"X-Request-ID": request_id, "traceparent": TRACEPARENT},
    )
    assert response.status_code == 200
    assert set(response.json or {}) == {"celery", "rq"}

    rows = celery_worker.rows(request_id, count=5)
    by_system: dict[str, list[t.Any]] = {}
    for row in rows:
        assert row.request_id == request_id
        system = (row.metadata or {}).get("system", row.event_type)
        by_system.setdefault(system, []).append(row)
    assert len(by_system.pop("http_request_end")) == 1
    assert len(by_system.pop("cache_miss")) == 2
    assert set(by_system) == {"celery", "rq"}
    for system in ("celery", "rq"):
        events = {r.event_type: r for r in by_system[system]}
        assert set(events) == {"worker_job_end"}, system
        end = events["worker_job_end"].metadata
        assert end["job"] in {"jobs.add", "jobs_app.rq_add"}
        assert end["job_id"] == response.json[system]  # type: ignore[index]
        assert end["queue"] == celery_worker.queue
        assert end["retries"] == 0
        assert end["trace_id"] == TRACE_ID
        assert 0 <= end["duration_ms"] < 10_000
    # The task's own record() call carries the ids too (actor: system).
    misses = [r for r in rows if r.event_type == "cache_miss"]
    assert len(misses) == 2
    for miss in misses:
        assert miss.actor_type == "system"
        assert miss.metadata == {"trace_id": TRACE_ID, "sum": 5}
    # And so do the log records of both workers.
    logged = _wait_for_lines(celery_worker, request_id, 2)
    assert logged == [f"{request_id} {TRACE_ID} adding 2 and 3"] * 2


def test_failing_task_is_recorded_without_its_message(celery_worker: Jobs) -> None:
    request_id = new_request_id("fail")
    app = celery_worker.app()
    response = app.test_client().get(
        "/enqueue?what=celery&task=fail", headers={"X-Request-ID": request_id}
    )
    assert response.status_code == 200
    rows = celery_worker.rows(request_id, count=2)
    [fail] = [r for r in rows if r.event_type == "worker_job_fail"]
    assert fail.severity == "error"
    assert fail.metadata["exception"] == "ValueError"
    assert fail.metadata["job"] == "jobs.fail"
    assert fail.metadata["will_retry"] is False
    assert "message" not in fail.metadata
    assert "4111" not in str(fail.metadata)
    assert fail.metadata["duration_ms"] >= 0


def test_retried_task_is_recorded_per_run(celery_worker: Jobs) -> None:
    """self.retry(): a warning that it will run again, then the final error."""
    request_id = new_request_id("flaky")
    app = celery_worker.app()
    response = app.test_client().get(
        "/enqueue?what=celery&task=flaky", headers={"X-Request-ID": request_id}
    )
    assert response.status_code == 200
    rows = celery_worker.rows(request_id, count=3)
    runs = [r for r in rows if r.event_type == "worker_job_fail"]
    assert [(r.severity, r.metadata["will_retry"]) for r in runs] == [
        ("warning", True),
        ("error", False),
    ]
    assert [r.metadata["retries"] for r in runs] == [0, 1]
    assert {r.metadata["exception"] for r in runs} == {"ConnectionError"}


def test_task_published_outside_a_request_runs_under_a_new_id(
    celery_worker: Jobs,
) -> None:
    """Inside ``corr.activate()`` the ids travel; with none, the run gets one."""
    app = celery_worker.app()
    add = app.extensions["celery"].tasks["jobs.add"]
    corr = Correlation(request_id=new_request_id("carried"), trace_id=TRACE_ID)
    with corr.activate():
        add.delay(1, 1)
    rows = celery_worker.rows(corr.request_id, count=2)
    assert {r.event_type for r in rows} == {"cache_miss", "worker_job_end"}


# -- the broker or the worker down ------------------------------------------


def test_request_succeeds_when_redis_is_down(
    jobs: Jobs, caplog: pytest.LogCaptureFixture
) -> None:
    """The enqueue's own error is the library's; the hooks add none."""
    app = jobs.app(JOBS_REDIS_URL=DOWN_REDIS_URL)
    request_id = new_request_id("down")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="flask_telemetry"):
        response = app.test_client().get(
            "/enqueue?what=celery,rq", headers={"X-Request-ID": request_id}
        )
    assert response.status_code == 200
    assert response.json == {
        "celery_error": "kombu.exceptions.OperationalError",
        "rq_error": "redis.exceptions.ConnectionError",
    }
    assert time.monotonic() - started < 15
    assert [r for r in caplog.records if r.name == "flask_telemetry"] == []
    [end] = jobs.rows(request_id)
    assert end.event_type == "http_request_end"
    assert end.metadata["status"] == 200


def test_enqueue_without_a_worker_succeeds(jobs: Jobs) -> None:
    """Nothing consumes this queue: the task waits there, with the ids."""
    app = jobs.app(JOBS_QUEUE=f"{jobs.queue}-idle")
    seen: list[dict[str, t.Any]] = []

    def spy(headers: dict[str, t.Any], **_: t.Any) -> None:
        seen.append(dict(headers))

    signals.before_task_publish.connect(spy, weak=False)
    try:
        request_id = new_request_id("idle")
        response = app.test_client().get(
            "/enqueue?what=celery",
            headers={"X-Request-ID": request_id, "traceparent": TRACEPARENT},
        )
    finally:
        signals.before_task_publish.disconnect(spy)
    assert response.status_code == 200
    assert "celery" in (response.json or {})
    [headers] = seen
    assert headers["telemetry_request_id"] == request_id
    assert headers["telemetry_trace_id"] == TRACE_ID


# -- in this process: options, sampling, instrument/uninstrument ----------


def _eager_app(**config: t.Any) -> Flask:
    app = jobs_app.create_app({"TESTING": True, "TELEMETRY_DELIVERY": "sync", **config})
    app.extensions["celery"].conf.task_always_eager = True
    with app.app_context():
        jobs_app.db.create_all()
    return app


def _rows(app: Flask) -> list[t.Any]:
    with app.app_context():
        jobs_app.telemetry.flush(5)
        model = jobs_app.telemetry.trace_model
        return list(jobs_app.db.session.scalars(jobs_app.db.select(model)))


def test_eager_tasks_record_start_end_and_fail() -> None:
    app = _eager_app()
    celery_app = app.extensions["celery"]
    telemetry_celery.instrument(
        celery_app, jobs_app.telemetry, app=app, record_start=True
    )
    celery_app.tasks["jobs.add"].delay(1, 2)
    celery_app.tasks["jobs.fail"].delay()
    rows = _rows(app)
    assert [r.event_type for r in rows] == [
        "worker_job_start",
        "cache_miss",
        "worker_job_end",
        "worker_job_start",
        "worker_job_fail",
    ]
    # One id per run, the same for every row of that run.
    assert rows[0].request_id == rows[1].request_id == rows[2].request_id
    assert rows[3].request_id == rows[4].request_id != rows[0].request_id
    assert rows[4].metadata_["exception"] == "ValueError"


def test_include_message_stores_the_message_cut() -> None:
    app = _eager_app()
    celery_app = app.extensions["celery"]
    telemetry_celery.instrument(
        celery_app, jobs_app.telemetry, app=app, include_message=True
    )
    celery_app.tasks["jobs.fail"].delay()
    [fail] = _rows(app)
    assert fail.metadata_["message"] == "card 4111 1111 1111 1111 declined"


def test_sampling_keeps_slow_and_failing_tasks() -> None:
    app = _eager_app(**{ConfigVars.SAMPLE_RATE: 0.0})
    celery_app = app.extensions["celery"]
    telemetry_celery.instrument(celery_app, jobs_app.telemetry, app=app, slow_ms=30)
    tasks = celery_app.tasks
    tasks["jobs.add"].delay(1, 2)  # routine: sampled out (its own record stays)
    tasks["jobs.sleep"].delay(0.05)  # slow: kept
    tasks["jobs.fail"].delay()  # failing: kept
    rows = _rows(app)
    assert [r.event_type for r in rows] == [
        "cache_miss",
        "worker_job_end",
        "worker_job_fail",
    ]
    slow, fail = rows[1].metadata_, rows[2].metadata_
    assert slow["slow"] is True
    assert slow["sample_rate"] == fail["sample_rate"] == 1.0
    assert rows[1].severity == "warning"


def test_instrument_is_idempotent_and_undone() -> None:
    app = _eager_app()
    celery_app = app.extensions["celery"]
    receivers = len(signals.task_postrun.receivers)
    telemetry_celery.instrument(celery_app, jobs_app.telemetry, app=app)
    telemetry_celery.instrument(celery_app, jobs_app.telemetry, app=app)
    assert len(signals.task_postrun.receivers) == receivers
    assert telemetry_celery.is_instrumented(celery_app)
    for made in list(telemetry_celery._instrumented):
        telemetry_celery.uninstrument(made)
    assert not telemetry_celery.is_instrumented(celery_app)
    assert len(signals.task_postrun.receivers) == receivers - 1
    celery_app.tasks["jobs.add"].delay(1, 2)
    assert [r.event_type for r in _rows(app)] == ["cache_miss"]


def test_bad_arguments_fail_at_instrument() -> None:
    app = _eager_app()
    with pytest.raises(TypeError, match="Telemetry"):
        telemetry_celery.instrument(app.extensions["celery"], object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slow_ms"):
        telemetry_celery.instrument(
            app.extensions["celery"], jobs_app.telemetry, slow_ms=-1
        )


def test_ids_from_the_message_are_checked() -> None:
    app = _eager_app()
    celery_app = app.extensions["celery"]
    telemetry_celery.instrument(celery_app, jobs_app.telemetry, app=app)
    add = celery_app.tasks["jobs.add"]
    add.apply((1, 1), headers={"telemetry_request_id": "good-id-1"})
    hostile = {"telemetry_request_id": "bad id\n", "telemetry_trace_id": "zz"}
    add.apply((1, 1), headers=hostile)
    rows = _rows(app)
    assert [r.request_id for r in rows[:2]] == ["good-id-1"] * 2
    assert rows[2].request_id == rows[3].request_id
    assert re.fullmatch(r"[0-9a-f-]{36}", rows[2].request_id)
    assert "trace_id" not in rows[3].metadata_


def test_hooks_never_raise_into_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside telemetry is logged; the task goes on, the ids are reset."""
    app = _eager_app()
    celery_app = app.extensions["celery"]
    telemetry_celery.instrument(celery_app, jobs_app.telemetry, app=app)

    def broken(*args: t.Any, **kwargs: t.Any) -> None:
        raise RuntimeError("telemetry bug")

    monkeypatch.setattr(jobs_app.telemetry, "record", broken)
    task = celery_app.tasks["jobs.add"]
    task.push_request(id="t-1")
    try:
        telemetry_celery._prerun(task=task, task_id="t-1")
        assert current_request_id() is not None
        telemetry_celery._postrun(task=task, state="SUCCESS")
        assert current_request_id() is None
    finally:
        task.pop_request()
    telemetry_celery._prerun(task=object(), task_id="t-2")
    telemetry_celery._postrun(task=object(), state="FAILURE", retval=ValueError())
    telemetry_celery._before_publish(headers={"x": object()})
    assert current_request_id() is None


def _wait_for_lines(jobs: Jobs, request_id: str, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        lines = (
            [
                line
                for line in jobs.log.read_text().splitlines()
                if line.startswith(request_id)
            ]
            if jobs.log.exists()
            else []
        )
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_pool_process_exit_stores_what_it_recorded(tmp_path: Path) -> None:
    """A prefork pool process ends with os._exit(): events still queued for
    the async writer are stored by worker_process_shutdown."""
    app = jobs_app.create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'pool.db'}",
            "TELEMETRY_DELIVERY": "async",
            "TELEMETRY_FLUSH_INTERVAL": 60.0,
        }
    )
    with app.app_context():
        jobs_app.db.create_all()
        jobs_app.telemetry.record("cache_miss")
        assert jobs_app.telemetry.stats()["written"] == 0
    signals.worker_process_shutdown.send(sender=None, pid=1, exitcode=0)
    with app.app_context():
        assert jobs_app.telemetry.stats()["written"] == 1
        jobs_app.telemetry.shutdown(5)
        jobs_app.db.engine.dispose()
