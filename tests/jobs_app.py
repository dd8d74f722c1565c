"""A small application with Celery tasks and RQ jobs, for the job integration tests.

The tests and the worker processes build it with :func:`create_app`,
configured by the environment (the worker) or by arguments (the tests):

- ``JOBS_DB_URL``: the database both processes see;
- ``JOBS_REDIS_URL``: the broker of Celery and the connection of RQ;
- ``JOBS_QUEUE``: the queue name, one per test module, so that runs cannot
  take each other's jobs;
- ``JOBS_LOG``: a file the worker's log records go to, with
  :class:`~flask_telemetry.RequestIdFilter`'s ``request_id``.

Workers: ``celery -A jobs_app:celery_app worker -P solo -Q $JOBS_QUEUE`` and
``FLASK_APP=jobs_app:create_app rq worker --worker-class
flask_telemetry.integrations.rq.Worker $JOBS_QUEUE``.

``GET /enqueue?what=celery,rq&task=add`` enqueues one job on each named
system and answers 200 with what happened, including the enqueue's own
error when the broker is down (as an application that catches it would).
"""

from __future__ import annotations

import logging
import os
import time
import typing as t

import redis
import rq
from celery import Celery, Task  # type: ignore[import-untyped]
from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import ConfigVars, EventType, RequestIdFilter, Telemetry
from flask_telemetry.integrations import celery as telemetry_celery
from flask_telemetry.integrations import rq as telemetry_rq

db = SQLAlchemy()
telemetry = Telemetry()
log = logging.getLogger("jobs_app")


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """The app, its Celery app (``app.extensions["celery"]``) and RQ queue."""
    app = Flask("jobs_app")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=os.environ.get("JOBS_DB_URL", "sqlite://"),
        JOBS_REDIS_URL=os.environ.get("JOBS_REDIS_URL", "redis://127.0.0.1:6379/0"),
        JOBS_QUEUE=os.environ.get("JOBS_QUEUE", "jobs"),
        **{ConfigVars.FLUSH_INTERVAL: 0.1},
    )
    app.config.update(config or {})
    db.init_app(app)
    telemetry.init_app(app)
    celery_app = celery_init_app(app)
    telemetry_celery.instrument(celery_app, telemetry, app=app)
    telemetry_rq.instrument(None, telemetry)
    _log_to(os.environ.get("JOBS_LOG"))

    @app.get("/enqueue")
    def enqueue() -> dict[str, t.Any]:
        task = request.args.get("task", "add")
        args = [2, 3] if task == "add" else []
        done: dict[str, t.Any] = {}
        for system in request.args.get("what", "celery,rq").split(","):
            try:
                if system == "celery":
                    result = app.extensions["celery"].tasks[f"jobs.{task}"].delay(*args)
                    done["celery"] = result.id
                else:
                    job = rq_queue(app).enqueue(f"jobs_app.rq_{task}", *args)
                    done["rq"] = job.id
            except Exception as exc:  # the library's own error, unchanged
                done[f"{system}_error"] = f"{type(exc).__module__}.{type(exc).__name__}"
        return done

    return app


def celery_init_app(app: Flask) -> Celery:
    """Flask's documented Celery factory, with the tasks of the tests."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(
        broker_url=app.config["JOBS_REDIS_URL"],
        task_default_queue=app.config["JOBS_QUEUE"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"max_retries": 1},
        worker_hijack_root_logger=False,
    )
    celery_app.task(name="jobs.add")(add)
    celery_app.task(name="jobs.fail")(fail)
    celery_app.task(name="jobs.sleep")(sleep)
    celery_app.task(name="jobs.flaky", bind=True, max_retries=1)(flaky)
    app.extensions["celery"] = celery_app
    return celery_app


def rq_queue(app: Flask) -> rq.Queue:
    """The app's RQ queue."""
    connection = redis.Redis.from_url(app.config["JOBS_REDIS_URL"])
    return rq.Queue(app.config["JOBS_QUEUE"], connection=connection)


def add(x: int, y: int) -> int:
    """Record one event and log one line, both carrying the request id."""
    telemetry.record(EventType.CACHE_MISS, metadata={"sum": x + y})
    log.warning("adding %s and %s", x, y)
    return x + y


def fail() -> None:
    """Fail with a message that must never be stored."""
    raise ValueError("card 4111 1111 1111 1111 declined")


def flaky(task: Task) -> None:
    """A Celery task that asks for a retry once, then fails."""
    raise task.retry(exc=ConnectionError("upstream down"), countdown=0)


def sleep(seconds: float = 0.05) -> None:
    """Take a while."""
    time.sleep(seconds)


# RQ finds jobs by import path.
rq_add = add
rq_fail = fail
rq_sleep = sleep


def _log_to(path: str | None) -> None:
    if not path or any(getattr(h, "jobs_app", False) for h in log.handlers):
        return
    handler = logging.FileHandler(path)
    handler.jobs_app = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(request_id)s %(trace_id)s %(message)s"))
    log.addHandler(handler)


def __getattr__(name: str) -> t.Any:
    """``celery -A jobs_app:celery_app``: the Celery app of a new Flask app."""
    if name == "celery_app":
        return create_app().extensions["celery"]
    raise AttributeError(name)
