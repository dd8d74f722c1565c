"""Pre-fork: gunicorn --preload with 4 workers, real HTTP load, SIGTERM.

The application is loaded in the master and forked: each worker must start
its own writer thread, never use the master's connections, and flush its
queue when it exits (gunicorn workers leave through ``sys.exit``, so the
``atexit`` hook runs in each of them).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

import fault_app
from conftest import MakeApp
from fault_app import get
from flask_telemetry import ConfigVars
from pgcluster import free_port, pg_cluster

pytestmark = pytest.mark.slow

#: The app gunicorn serves and the load generator, run from their own folder.
FAULT_APP = Path(fault_app.__file__).resolve()
BIN = Path(sys.executable).parent
REQUESTS = 2000


class Gunicorn:
    """A running ``gunicorn --preload`` serving ``fault_app:create_app()``."""

    def __init__(self, db_url: str, config: dict[str, t.Any], stats_dir: Path):
        self.port = free_port()
        self.stats_dir = stats_dir
        self.log = stats_dir / "gunicorn.log"
        env = {
            **os.environ,
            "FT_DB_URL": db_url,
            "FT_CONFIG": json.dumps(config),
            "FT_STATS_DIR": str(stats_dir),
        }
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--preload",
                "--workers=4",
                f"--bind=127.0.0.1:{self.port}",
                "--graceful-timeout=30",
                f"--chdir={FAULT_APP.parent}",
                "fault_app:create_app()",
            ],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}/event"
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            with contextlib.suppress(OSError):
                if get(self.url + "?seq=warmup&n=0", timeout=2)[0] == 201:
                    break
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def load(self, count: int, threads: int = 8) -> dict[str, t.Any]:
        """Real HTTP load from another process."""
        args = [str(count), str(threads)]
        out = subprocess.run(
            [sys.executable, str(FAULT_APP), "load", self.url, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        result: dict[str, t.Any] = json.loads(out.stdout)
        return result

    def terminate(self) -> float:
        """SIGTERM the master; return seconds until it has exited."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return time.monotonic() - started

    def worker_stats(self) -> list[dict[str, t.Any]]:
        """Final counters of each process that accepted an event."""
        found = []
        for path in self.stats_dir.glob("stats-*.json"):
            stats = json.loads(path.read_text())
            if stats.get("accepted"):
                found.append(stats)
        return found

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log_file.close()


def _assert_exact(stats: dict[str, t.Any]) -> None:
    assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())


def _total(stats: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    dropped: collections.Counter[str] = collections.Counter()
    for s in stats:
        dropped.update(s["dropped"])
    return {
        "accepted": sum(s["accepted"] for s in stats),
        "written": sum(s["written"] for s in stats),
        "dropped": dict(dropped),
    }


def test_preload_workers_store_every_event_once(
    make_app: MakeApp, db_url: str, tmp_path: Path
) -> None:
    """Events are still queued at SIGTERM (long flush interval, big batches):
    only the workers' exit flush can store them, and it stores all of them."""
    bundle = make_app()  # creates telemetry_traces on this backend
    shutdown_timeout = 10.0
    server = Gunicorn(
        db_url,
        {
            ConfigVars.DELIVERY: "async",
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.FLUSH_INTERVAL: 120.0,
            ConfigVars.BATCH_SIZE: 10_000,
            ConfigVars.SHUTDOWN_TIMEOUT: shutdown_timeout,
        },
        tmp_path,
    )
    try:
        result = server.load(REQUESTS)
        assert result["statuses"] == {"201": REQUESTS}
        assert bundle.rows() == []  # all of it waits in the workers' queues
        took = server.terminate()
    finally:
        server.kill()
    assert server.proc.returncode == 0, server.log.read_text()
    print(f"\ngunicorn stopped {took:.2f}s after SIGTERM (flushing 2,000 events)")
    assert took < shutdown_timeout + 5, f"gunicorn took {took:.1f}s to stop"

    seqs = collections.Counter(r._mapping["metadata"]["seq"] for r in bundle.rows())
    assert sorted(seqs) == sorted(str(i) for i in range(REQUESTS))
    assert set(seqs.values()) == {1}  # no duplicate, no loss

    workers = server.worker_stats()
    assert len(workers) >= 2, "the load reached a single worker"
    for stats in workers:
        _assert_exact(stats)
    total = _total(workers)
    assert total["accepted"] == total["written"] == REQUESTS
    assert sum(total["dropped"].values()) == 0


def test_worker_exit_with_dead_database_is_bounded_and_counted(
    tmp_path: Path,
) -> None:
    """The database is down at shutdown: each worker gives up after
    TELEMETRY_SHUTDOWN_TIMEOUT and counts what it could not store."""
    with pg_cluster() as cluster:
        engine = sa.create_engine(cluster.url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE telemetry_traces (id bigserial primary key, "
                "actor_type varchar(32) not null, actor_id bigint, "
                "event_type varchar(64) not null, severity varchar(16) not null, "
                "request_id varchar(64), route_name varchar(255), "
                "ip_address varchar(45), user_agent varchar(512), metadata json, "
                "occurred_at timestamptz not null)"
            )
        engine.dispose()
        shutdown_timeout = 2.0
        server = Gunicorn(
            cluster.url,
            {
                ConfigVars.DELIVERY: "async",
                ConfigVars.RECORD_REQUESTS: False,
                ConfigVars.FLUSH_INTERVAL: 0.05,
                ConfigVars.BATCH_SIZE: 50,
                ConfigVars.SHUTDOWN_TIMEOUT: shutdown_timeout,
                ConfigVars.BREAKER_COOLDOWN: 30.0,
                "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"connect_timeout": 2}},
            },
            tmp_path,
        )
        try:
            cluster.stop()
            result = server.load(400)
            assert result["statuses"] == {"201": 400}
            took = server.terminate()
        finally:
            server.kill()
    print(f"\ngunicorn stopped {took:.2f}s after SIGTERM, database down")
    assert took < shutdown_timeout + 4, f"gunicorn took {took:.1f}s to stop"
    workers = server.worker_stats()
    assert workers
    for stats in workers:
        _assert_exact(stats)
    total = _total(workers)
    assert total["accepted"] == 400
    assert total["written"] == 0
    assert total["dropped"]["shutdown"] + total["dropped"]["storage_error"] == 400
