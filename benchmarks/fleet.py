"""Ingest at fleet scale: N processes writing at their maximum into one PostgreSQL.

``python -m benchmarks.fleet [--quick]`` (and ``make bench``, through
:mod:`benchmarks.run`). For N = 1, 4 and 16 processes, directly and through
a PgBouncer in transaction pooling started for the run, into the plain
``telemetry_traces`` and into the same table partitioned by day
(docs/examples/partitioning.sql), each process inserts batches of 500 rows
back to back with telemetry's own insert path (:class:`TraceWriter`: COPY
in a transaction with its ``SET LOCAL`` timeouts, one commit per batch),
the rows validated once beforehand, so that the figures are the database's
and the path's, not the Python cost of building events (which a real
worker spreads over its requests).

Measured per cell: events stored per second over all processes, the 99th
percentile of one batch's insert-and-commit time, lock waits (backends
waiting on a lock, sampled every 20 ms in ``pg_stat_activity``, as a mean),
and the most server connections the writers held at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import multiprocessing
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import typing as t
import uuid

import sqlalchemy as sa

from .common import POSTGRES_SERVER, machine
from .report import Table

ROOT = pathlib.Path(__file__).resolve().parents[1]
PARTITIONING = ROOT / "docs" / "examples" / "partitioning.sql"
PROCESSES = (1, 4, 16)
BATCH = 500
APP_NAME = "ft-bench-fleet"
#: What telemetry needs behind PgBouncer in transaction mode (docs/scaling.rst).
CONNECT_ARGS = {"prepare_threshold": None}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cell:
    """One measurement: ``processes`` writers on ``path`` into ``table``."""

    processes: int
    path: str  # "direct" or "pgbouncer"
    table: str  # "plain" or "daily partitions"
    events_per_s: float
    p99_commit_ms: float
    lock_waits: float
    connections: int
    errors: int


# -- PgBouncer --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def pgbouncer(server: str, pool_size: int = 8) -> t.Iterator[int | None]:
    """A PgBouncer in transaction pooling in front of ``server``; its port,
    or None when pgbouncer is not installed."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if binary is None:
        yield None
        return
    url = sa.make_url(server)
    user = url.username or "postgres"
    root = pathlib.Path(tempfile.mkdtemp(prefix="ft-bench-pgbouncer-"))
    port = _free_port()
    (root / "users.txt").write_text(f'"{user}" ""\n')
    (root / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={url.host or '127.0.0.1'} port={url.port or 5432}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir =\nauth_type = trust\nauth_file = {root}/users.txt\n"
        f"pool_mode = transaction\nmax_client_conn = 1000\n"
        f"default_pool_size = {pool_size}\nserver_reset_query =\n"
        f"logfile = {root}/pgbouncer.log\n"
    )
    run_as = None
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        import pwd

        run_as = "postgres"
        account = pwd.getpwnam(run_as)
        for path in (root, root / "users.txt", root / "pgbouncer.ini"):
            os.chown(path, account.pw_uid, account.pw_gid)
    proc = subprocess.Popen(
        [binary, str(root / "pgbouncer.ini")],
        user=run_as,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.5),
            ):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pgbouncer did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


# -- the writers --------------------------------------------------------------


def _writer(
    url: str, name: str, start_at: float, seconds: float, out: t.Any, index: int
) -> None:
    """One process: insert batches back to back from ``start_at`` for
    ``seconds``; put (rows stored, batch times, errors) on ``out``."""
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_telemetry import Telemetry
    from flask_telemetry.storage.row import TraceEvent
    from flask_telemetry.storage.writer import TraceWriter

    app = Flask(f"fleet{index}")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    SQLAlchemy(app)
    table = Telemetry(app).trace_model.__table__
    engine = sa.create_engine(
        url, connect_args={**CONNECT_ARGS, "application_name": name}, pool_size=1
    )
    writer = TraceWriter(lambda: engine, table)
    now = dt.datetime.now(dt.UTC)
    rows, rejected = writer.validate(
        [
            TraceEvent(
                actor_type="user",
                actor_id=index * 1_000_000 + i,
                event_type="http_request_end",
                severity="info",
                request_id=uuid.uuid4().hex,
                route_name="api.items",
                ip_address="203.0.113.7",
                user_agent="Mozilla/5.0 (bench)",
                metadata={"method": "GET", "status": 200, "duration_ms": 12.5},
                occurred_at=now,
            )
            for i in range(BATCH)
        ]
    )
    assert not rejected
    stored, times, errors = 0, [], 0
    time.sleep(max(0.0, start_at - time.time()))
    ends = start_at + seconds
    while time.time() < ends:
        began = time.perf_counter()
        try:
            writer.insert(rows)
        except Exception:
            errors += 1
            continue
        times.append(time.perf_counter() - began)
        stored += len(rows)
    engine.dispose()
    out.put((stored, times, errors))


def _sampler(
    server: str, name: str, stop: threading.Event, found: dict[str, list[int]]
) -> None:
    engine = sa.create_engine(server, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        while not stop.is_set():
            waiting, held = conn.execute(
                sa.text(
                    "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'), "
                    "count(*) FILTER (WHERE application_name = :name) "
                    "FROM pg_stat_activity WHERE datname = current_database()"
                ),
                {"name": name},
            ).one()
            found["waiting"].append(int(waiting))
            found["held"].append(int(held))
            stop.wait(0.02)
    engine.dispose()


def measure(
    url: str, monitor: str, processes: int, seconds: float
) -> tuple[float, float, float, int, int]:
    """(events/s, p99 commit ms, mean lock waits, most connections, errors)."""
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    name = f"{APP_NAME}-{uuid.uuid4().hex[:8]}"  # this cell's connections
    start_at = time.time() + 1.0 + 0.1 * processes  # all start together
    children = [
        context.Process(target=_writer, args=(url, name, start_at, seconds, out, i))
        for i in range(processes)
    ]
    for child in children:
        child.start()
    found: dict[str, list[int]] = {"waiting": [], "held": []}
    stop = threading.Event()
    sampler = threading.Thread(target=_sampler, args=(monitor, name, stop, found))
    time.sleep(max(0.0, start_at - time.time()))
    sampler.start()
    results = [out.get(timeout=seconds + 120) for _ in children]
    stop.set()
    sampler.join()
    for child in children:
        child.join(30)
    stored = sum(r[0] for r in results)
    times = sorted(x for r in results for x in r[1])
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] if times else 0.0
    return (
        stored / seconds,
        p99 * 1000,
        statistics.fmean(found["waiting"]) if found["waiting"] else 0.0,
        max(found["held"], default=0),
        sum(r[2] for r in results),
    )


# -- the tables ---------------------------------------------------------------


def _create(url: str, partitioned: bool) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS telemetry_traces CASCADE")
        conn.exec_driver_sql(
            "DROP FUNCTION IF EXISTS telemetry_traces_add_partition(date), "
            "telemetry_traces_drop_partitions(integer)"
        )
    engine.dispose()
    if partitioned:
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # the script as psql runs it: no params
            dbapi: t.Any = conn.connection.dbapi_connection
            with dbapi.cursor() as cursor:
                cursor.execute(PARTITIONING.read_text())
        engine.dispose()
        return
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_telemetry import Telemetry

    app = Flask("fleet_setup")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    db = SQLAlchemy(app)
    Telemetry(app)
    with app.app_context():
        db.create_all()
        db.engine.dispose()


def run(server: str = POSTGRES_SERVER, *, seconds: float = 8.0) -> list[Cell]:
    """Every cell, in a database of the run's own (dropped at the end)."""
    name = f"bench_fleet_{os.getpid()}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.make_url(server).set(database=name).render_as_string(False)
    cells = []
    try:
        with pgbouncer(server) as port:
            paths = {"direct": url}
            if port is not None:
                paths["pgbouncer"] = (
                    sa.make_url(url).set(port=port).render_as_string(False)
                )
            for table in ("plain", "daily partitions"):
                _create(url, table != "plain")
                for path, target in paths.items():
                    for processes in PROCESSES:
                        rate, p99, waits, held, errors = measure(
                            target, url, processes, seconds
                        )
                        cells.append(
                            Cell(
                                processes=processes,
                                path=path,
                                table=table,
                                events_per_s=rate,
                                p99_commit_ms=p99,
                                lock_waits=waits,
                                connections=held,
                                errors=errors,
                            )
                        )
                        print(f"  fleet: {cells[-1]}", flush=True)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
    return cells


def table(cells: list[Cell], seconds: float) -> Table:
    """The cells as one table."""
    return Table(
        title=(
            "Fleet ingest: N processes writing at their maximum into one "
            "PostgreSQL (batches of 500)"
        ),
        headers=[
            "table",
            "path",
            "processes",
            "events/s stored",
            "p99 batch commit",
            "lock waits",
            "server connections",
            "errors",
        ],
        rows=[
            [
                c.table,
                c.path,
                str(c.processes),
                f"{c.events_per_s:,.0f}",
                f"{c.p99_commit_ms:.1f} ms",
                f"{c.lock_waits:.2f}",
                str(c.connections),
                str(c.errors),
            ]
            for c in cells
        ],
        note=(
            f"{seconds:g} s per cell on {machine()}; the server and every "
            "writer share the machine's cores. Lock waits: backends waiting "
            "on a lock, sampled every 20 ms (mean). Server connections: the "
            "most the writers held at once (PgBouncer: a pool of 8)."
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet")
    parser.add_argument("--quick", action="store_true", help="2 s per cell")
    args = parser.parse_args(argv)
    seconds = 2.0 if args.quick else 8.0
    cells = run(seconds=seconds)
    print()
    print(table(cells, seconds).rst())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
