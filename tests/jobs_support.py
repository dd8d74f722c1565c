"""Fixtures and helpers of the job integration tests: Redis, databases, workers.

``TELEMETRY_TEST_REDIS_URL`` names the Redis database the tests use
(``.ci/run`` sets it). Unset, the tests that need Redis are skipped with
that reason; set and Redis does not answer, they fail. Each module works on
queues of its own (a random suffix), so runs cannot take each other's jobs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import typing as t
import uuid
from pathlib import Path

import jobs_app
import pytest
import redis
import rq
import sqlalchemy as sa
from flask import Flask

from conftest import require_backend

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
REDIS_ENV = "TELEMETRY_TEST_REDIS_URL"
#: A port nothing listens on: a broker that is down.
DOWN_REDIS_URL = "redis://127.0.0.1:9/0"


def redis_url() -> str:
    """The Redis the tests use; skipped when unset, failing when it does not answer."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"{REDIS_ENV}={url} is set but Redis does not answer: {exc}")
    finally:
        client.close()
    return url


@dataclasses.dataclass
class Jobs:
    """A database and a queue name that the tests and one worker share."""

    db_url: str
    redis_url: str
    queue: str
    log: Path
    apps: list[Flask] = dataclasses.field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "JOBS_DB_URL": self.db_url,
            "JOBS_REDIS_URL": self.redis_url,
            "JOBS_QUEUE": self.queue,
            "JOBS_LOG": str(self.log),
            "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
        }

    def app(self, **config: t.Any) -> Flask:
        """A new app on the shared database (sync delivery), instrumented."""
        app = jobs_app.create_app(
            {
                "SQLALCHEMY_DATABASE_URI": self.db_url,
                "JOBS_REDIS_URL": self.redis_url,
                "JOBS_QUEUE": self.queue,
                "TESTING": True,
                "TELEMETRY_DELIVERY": "sync",
                **config,
            }
        )
        self.apps.append(app)
        return app

    def rows(
        self, request_id: str, *, count: int = 1, timeout: float = 30.0
    ) -> list[sa.Row[t.Any]]:
        """The rows of ``request_id``, once at least ``count`` are there."""
        engine = sa.create_engine(self.db_url)
        table = sa.table(
            "telemetry_traces",
            sa.column("id"),
            sa.column("event_type"),
            sa.column("severity"),
            sa.column("request_id"),
            sa.column("actor_type"),
            sa.column("metadata", sa.JSON),
        )
        query = table.select().where(table.c.request_id == request_id)
        deadline = time.monotonic() + timeout
        try:
            while True:
                with engine.connect() as conn:
                    rows = list(conn.execute(query.order_by(table.c.id)))
                if len(rows) >= count or time.monotonic() > deadline:
                    return rows
                time.sleep(0.1)
        finally:
            engine.dispose()


@contextlib.contextmanager
def shared_jobs(
    backend: str,
    server_databases: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> t.Iterator[Jobs]:
    """A database with ``telemetry_traces`` and a queue of this module's own."""
    require_backend(backend)
    url = redis_url()
    tmp = tmp_path_factory.mktemp("jobs")
    if backend == "sqlite":
        db_url = f"sqlite:///{tmp / 'jobs.db'}"
    else:
        db_url = server_databases[backend]
    shared = Jobs(
        db_url=db_url,
        redis_url=url,
        queue=f"ft-test-{uuid.uuid4().hex[:10]}",
        log=tmp / "worker.log",
    )
    app = shared.app()
    with app.app_context():
        jobs_app.db.create_all()
    yield shared
    with app.app_context():
        jobs_app.db.drop_all()
    for made in shared.apps:
        with made.app_context():
            jobs_app.telemetry.shutdown(5)
            for engine in jobs_app.db.engines.values():
                engine.dispose()
    for name in (f"{shared.queue}-idle", shared.queue):  # "*name*" matches both
        forget_queue(url, name)


def forget_queue(url: str, name: str) -> None:
    """Delete what the tests left in Redis for queue ``name``: its jobs (RQ
    keeps failed ones for a year), registries, Celery messages and bindings."""
    client = redis.Redis.from_url(url)
    with contextlib.closing(client):
        queue = rq.Queue(name, connection=client)
        job_ids = set(queue.get_job_ids())
        for registry in (
            queue.finished_job_registry,
            queue.failed_job_registry,
            queue.started_job_registry,
            queue.deferred_job_registry,
            queue.scheduled_job_registry,
        ):
            job_ids.update(registry.get_job_ids())
        for job in rq.job.Job.fetch_many(list(job_ids), connection=client):
            if job is not None:
                job.delete()
        queue.delete(delete_jobs=True)
        keys = list(client.scan_iter(f"*{name}*"))
        if keys:
            client.delete(*keys)


@contextlib.contextmanager
def worker(command: list[str], jobs: Jobs, ready: str) -> t.Iterator[None]:
    """Run a worker process until the ``with`` ends; wait until it logs ``ready``."""
    out = jobs.log.with_name(f"{jobs.log.stem}-{command[2]}.out")
    with out.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=TESTS,
            env={**jobs.env, "FLASK_APP": "jobs_app:create_app"},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while ready not in out.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{command} did not start:\n{out.read_text(errors='replace')}"
                )
            time.sleep(0.1)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


#: Module-scoped fixtures of the test modules: one database, queue and worker
#: per module and backend.
BACKENDS = ["sqlite", "postgresql", "mariadb"]


def celery_command(jobs: Jobs) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "jobs_app:celery_app",
        "worker",
        "--pool=solo",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-Q",
        jobs.queue,
    ]


def rq_command(jobs: Jobs) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rq.cli",
        "worker",
        "--url",
        jobs.redis_url,
        "--worker-class",
        "flask_telemetry.integrations.rq.Worker",
        "--logging_level",
        "INFO",
        jobs.queue,
    ]


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def new_request_id(label: str) -> str:
    """A request id of this test's own."""
    return f"{label}-{uuid.uuid4().hex[:12]}"
