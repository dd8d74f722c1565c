"""``python -m benchmarks.reading``: the read side on a large table, per database.

Loads the data set (by default 2,000,000 rows: 1,000,000 ``http_request_end``
over 200 routes and 7 days, and 1,000,000 other events, a third of them inside
those requests) into a database of its own on SQLite, PostgreSQL and MariaDB,
then times, side by side with a plain hand-written SQL query for the same
figures:

- ``report --since 24h`` (request_summary and event_counts),
- ``trace`` (every event of one request),
- ``events(limit=100)`` pages: the newest, one in the middle, the oldest, and
  one filtered to a rare severity,
- ``prune`` of the older half (1,000,000 rows) while a writer stores 1,000
  events/s through the project's own writer: rows/s, and the writer's longest
  insert and failures. The reference is one ``DELETE ... WHERE occurred_at <
  cutoff`` over the same rows, reloaded, beside the same writer.

Not part of ``make bench`` (loading takes minutes). Options: ``--rows N``
(total rows), ``--db sqlite,postgresql,mariadb``. Servers as for ``make bench``
(``BENCH_POSTGRES_URL``, ``BENCH_MARIADB_URL``); the databases are named
``bench_read_*`` with a random suffix and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import typing as t
import uuid

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import reading
from flask_telemetry.storage import TraceEvent, TraceWriter, trace_model

from .common import MARIADB_SERVER, POSTGRES_SERVER, machine

ROUTES = 200
DAYS = 7
OTHER_TYPES = [
    ("cache_hit", "debug"),
    ("cache_miss", "info"),
    ("db_query_slow", "warning"),
    ("external_call_slow", "warning"),
    ("external_call_fail", "error"),
    ("auth_login_success", "info"),
    ("resource_mutation", "notice"),
]
COLUMNS = (
    "actor_type",
    "actor_id",
    "event_type",
    "severity",
    "request_id",
    "route_name",
    "ip_address",
    "user_agent",
    "metadata",
    "occurred_at",
)
CHUNK = 20_000


def _log(message: str) -> None:
    print(
        f"[reading {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True
    )


# -- the data set -----------------------------------------------------------------


def generate(
    rows: int, now: dt.datetime, *, start: int = 0, stop: int | None = None
) -> t.Iterator[list[tuple[t.Any, ...]]]:
    """Rows ``start`` to ``stop`` of the data set, oldest first, in chunks.

    Half the rows are ``http_request_end`` (one in 200 routes, Zipf-like
    popularity, log-normal durations, 2% 4xx, 0.5% 5xx); the others are
    events of other types, a third of them carrying the request id of the
    request just before them. Deterministic for a given ``rows``.
    """
    stop = rows if stop is None else stop
    span = dt.timedelta(days=DAYS).total_seconds()
    begin = now - dt.timedelta(days=DAYS)
    weights = [1 / (i + 1) for i in range(ROUTES)]
    names = [f"api.resource_{i:03d}" for i in range(ROUTES)]
    chunk: list[tuple[t.Any, ...]] = []
    for index in range(start, stop):
        rng = random.Random(index)
        when = begin + dt.timedelta(seconds=span * index / rows)
        request = index - index % 2
        request_id = f"req-{request:09d}"
        if index % 2 == 0:
            route = rng.choices(names, weights)[0] if rng.random() > 0.01 else None
            draw = rng.random()
            status = 500 if draw < 0.005 else 404 if draw < 0.025 else 200
            metadata: dict[str, t.Any] = {
                "method": "GET",
                "status": status,
                "duration_ms": round(rng.lognormvariate(3.0, 0.9), 3),
            }
            severity = "error" if status >= 500 else "info"
            if metadata["duration_ms"] > 1000:
                metadata["slow"] = True
                severity = "warning"
            chunk.append(
                (
                    "user",
                    index % 5000,
                    "http_request_end",
                    severity,
                    request_id,
                    route,
                    "203.0.113.7",
                    "bench/1.0",
                    metadata,
                    when,
                )
            )
        else:
            event_type, severity = OTHER_TYPES[index % len(OTHER_TYPES)]
            in_request = index % 3 == 1
            chunk.append(
                (
                    "system",
                    None,
                    event_type,
                    severity,
                    request_id if in_request else None,
                    None,
                    None,
                    None,
                    {"n": index},
                    when,
                )
            )
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _plain(dialect: str, row: tuple[t.Any, ...]) -> tuple[t.Any, ...]:
    when: dt.datetime = row[-1]
    if dialect != "postgresql":
        when = when.replace(tzinfo=None)
    return (*row[:-2], json.dumps(row[-2]), when)


def load(engine: sa.Engine, table: sa.Table, chunks: t.Iterable[list[t.Any]]) -> int:
    """Bulk-load rows: COPY on PostgreSQL, multi-row INSERTs elsewhere."""
    dialect = engine.dialect.name
    loaded = 0
    if dialect == "postgresql":
        raw = engine.raw_connection()
        try:
            cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
            copy_sql = f"COPY {table.name} ({', '.join(COLUMNS)}) FROM STDIN"
            with cursor.copy(copy_sql) as copy:
                for chunk in chunks:
                    for row in chunk:
                        copy.write_row(_plain(dialect, row))
                    loaded += len(chunk)
            raw.commit()
        finally:
            raw.close()
        return loaded
    marks = ", ".join(["%s"] * len(COLUMNS)) if dialect != "sqlite" else None
    with engine.begin() as conn:
        dbapi = conn.connection.driver_connection
        cursor = dbapi.cursor()  # type: ignore[union-attr]
        if marks is None:
            sql = (
                f"INSERT INTO {table.name} ({', '.join(COLUMNS)}) VALUES "
                f"({', '.join('?' * len(COLUMNS))})"
            )
        else:  # pymysql turns executemany into multi-row INSERTs
            sql = f"INSERT INTO {table.name} ({', '.join(COLUMNS)}) VALUES ({marks})"
        for chunk in chunks:
            rows = [_plain(dialect, row) for row in chunk]
            if dialect == "sqlite":
                rows = [(*r[:-1], r[-1].isoformat(" ", "microseconds")) for r in rows]
            cursor.executemany(sql, rows)
            loaded += len(chunk)
    return loaded


# -- databases --------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, workdir: str) -> t.Iterator[str]:
    """A database of this run's own on ``kind``, dropped at the end."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/reading.db"
        return
    server = POSTGRES_SERVER if kind == "postgresql" else MARIADB_SERVER
    name = f"bench_read_{kind[:2]}_{uuid.uuid4().hex[:8]}"
    quoted = f'"{name}"' if kind == "postgresql" else f"`{name}`"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
    try:
        yield sa.make_url(server).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}{force}")
        admin.dispose()


def prepare(url: str, rows: int, now: dt.datetime) -> tuple[sa.Engine, sa.Table]:
    """The model's table, loaded, then indexed, then analysed."""
    engine = sa.create_engine(url)
    table: sa.Table = trace_model(SQLAlchemy()).__table__
    with engine.begin() as conn:
        conn.execute(sa.schema.CreateTable(table))
    started = time.perf_counter()
    loaded = load(engine, table, generate(rows, now))
    took = time.perf_counter() - started
    _log(f"{engine.dialect.name}: loaded {loaded:,} rows in {took:.1f} s")
    started = time.perf_counter()
    with engine.begin() as conn:
        for index in table.indexes:
            index.create(conn)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            {"postgresql": f"ANALYZE {table.name}", "sqlite": "ANALYZE"}.get(
                engine.dialect.name, f"ANALYZE TABLE {table.name}"
            )
        )
    _log(f"{engine.dialect.name}: indexed in {time.perf_counter() - started:.1f} s")
    return engine, table


# -- timing -----------------------------------------------------------------------


def timed(call: t.Callable[[], t.Any], repeat: int = 3) -> tuple[float, t.Any]:
    """Median wall time of ``repeat`` calls after one warm-up, and the result."""
    started = time.perf_counter()
    result = call()
    if time.perf_counter() - started > 5:
        repeat = 1  # slow enough to be measured once
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def reference_report(
    engine: sa.Engine, table: sa.Table, since: dt.datetime
) -> list[tuple[t.Any, ...]]:
    """The plainest correct hand-written SQL for the same figures."""
    dialect = engine.dialect.name
    bound = since if dialect == "postgresql" else since.replace(tzinfo=None)
    name = table.name
    with engine.connect() as conn:
        if dialect == "postgresql":
            sql = f"""
                SELECT route_name, count(*), avg(d), max(d),
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY d),
                  percentile_cont(0.95) WITHIN GROUP (ORDER BY d),
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY d),
                  count(*) FILTER (WHERE s >= 500 OR x IS NOT NULL),
                  count(*) FILTER (WHERE s BETWEEN 400 AND 499)
                FROM (SELECT route_name,
                        (metadata->>'duration_ms')::float8 AS d,
                        (metadata->>'status')::int AS s,
                        metadata->>'exception' AS x
                      FROM {name}
                      WHERE event_type = 'http_request_end'
                        AND occurred_at >= %(since)s) AS r
                GROUP BY route_name"""
            routes = conn.exec_driver_sql(sql, {"since": bound}).all()
        else:  # no usable percentile function: fetch the sorted durations
            if dialect == "sqlite":
                sql = f"""
                    SELECT route_name, json_extract(metadata, '$.duration_ms'),
                           json_extract(metadata, '$.status'),
                           json_extract(metadata, '$.exception')
                    FROM {name}
                    WHERE event_type = 'http_request_end' AND occurred_at >= ?
                    ORDER BY route_name, 2"""
                params: t.Any = (bound.isoformat(" ", "microseconds"),)
            else:
                sql = f"""
                    SELECT route_name,
                           JSON_VALUE(metadata, '$.duration_ms') + 0e0 AS d,
                           JSON_VALUE(metadata, '$.status') + 0,
                           JSON_VALUE(metadata, '$.exception')
                    FROM {name}
                    WHERE event_type = 'http_request_end'
                      AND occurred_at >= %(since)s
                    ORDER BY route_name, d"""
                params = {"since": bound}
            fetched = conn.exec_driver_sql(sql, params).all()
            routes = []
            by_route: dict[t.Any, list[t.Any]] = {}
            for row in fetched:
                by_route.setdefault(row[0], []).append(row)
            for route, items in by_route.items():
                values = [r[1] for r in items]
                n = len(values)

                def cont(p: float, values: list[float] = values, n: int = n) -> float:
                    h = p * (n - 1)
                    low = int(h)
                    high = min(low + 1, n - 1)
                    return values[low] + (values[high] - values[low]) * (h - low)

                routes.append(
                    (
                        route,
                        n,
                        sum(values) / n,
                        values[-1],
                        cont(0.5),
                        cont(0.95),
                        cont(0.99),
                        sum(1 for r in items if r[2] >= 500 or r[3] is not None),
                        sum(1 for r in items if 400 <= r[2] < 500),
                    )
                )
        counts = conn.exec_driver_sql(
            f"SELECT event_type, severity, count(*) FROM {name} "
            f"WHERE occurred_at >= {'%(since)s' if dialect != 'sqlite' else '?'} "
            "GROUP BY event_type, severity",
            {"since": bound}
            if dialect != "sqlite"
            else (bound.isoformat(" ", "microseconds"),),
        ).all()
    return [*routes, *counts]


def mariadb_window_report(
    engine: sa.Engine, table: sa.Table, since: dt.datetime
) -> str:
    """MariaDB's own PERCENTILE_CONT (a window function) for the same
    figures, once, stopped after 60 s."""
    w = "(PARTITION BY route_name)"
    sql = f"""
        SET STATEMENT max_statement_time = 60 FOR
        SELECT DISTINCT route_name, count(*) OVER {w}, avg(d) OVER {w},
          PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY d) OVER {w},
          PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY d) OVER {w},
          PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY d) OVER {w}
        FROM (SELECT route_name, JSON_VALUE(metadata, '$.duration_ms') + 0e0 AS d
              FROM {table.name}
              WHERE event_type = 'http_request_end' AND occurred_at >= %(since)s) r"""
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql, {"since": since.replace(tzinfo=None)}).all()
    except sa.exc.DBAPIError:
        return f"stopped after {time.perf_counter() - started:.0f} s"
    return f"{(time.perf_counter() - started) * 1000:,.1f} ms"


def report_figures(
    engine: sa.Engine, table: sa.Table, since: dt.datetime
) -> list[t.Any]:
    return [
        *reading.request_summary(engine, table, since=since),
        *reading.event_counts(engine, table, since=since),
    ]


def check_same(ours: list[t.Any], reference: list[tuple[t.Any, ...]]) -> None:
    """The API's figures equal the reference's (percentiles to 1e-6 ms)."""
    theirs = {r[0]: r for r in reference if len(r) == 9}
    summaries = [s for s in ours if isinstance(s, reading.RouteSummary)]
    assert len(summaries) == len(theirs), (len(summaries), len(theirs))
    for summary in summaries:
        ref = theirs[summary.route_name]
        assert summary.requests == ref[1], (summary, ref)
        for mine, other in zip(
            (
                summary.mean_ms,
                summary.max_ms,
                summary.p50_ms,
                summary.p95_ms,
                summary.p99_ms,
            ),
            ref[2:7],
            strict=True,
        ):
            assert abs(mine - float(other)) < 1e-6, (summary, ref)
        assert summary.errors == int(ref[7])
        assert summary.client_errors == int(ref[8])


class Writer:
    """Stores ``rate`` events/s through the project's TraceWriter (10 per insert)."""

    def __init__(self, engine: sa.Engine, table: sa.Table, rate: int = 1000) -> None:
        self.writer = TraceWriter(lambda: engine, table)
        self.rate = rate
        self.stored = 0
        self.failures = 0
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        per_insert = 10
        interval = per_insert / self.rate
        deadline = time.perf_counter()
        while not self._stop.is_set():
            now = dt.datetime.now(dt.UTC)
            events = [
                TraceEvent(
                    actor_type="system",
                    event_type="cache_hit",
                    severity="debug",
                    metadata={"w": self.stored + i},
                    occurred_at=now,
                )
                for i in range(per_insert)
            ]
            rows, _ = self.writer.validate(events)
            started = time.perf_counter()
            try:
                self.writer.insert(rows)
                self.stored += per_insert
            except Exception:
                self.failures += 1
            self.waits.append(time.perf_counter() - started)
            deadline += interval
            pause = deadline - time.perf_counter()
            if pause > 0:
                time.sleep(pause)

    def summary(self) -> str:
        waits = sorted(self.waits) or [0.0]
        p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
        return (
            f"writer stored {self.stored:,} ({self.failures} failed inserts), "
            f"insert p99 {p99 * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms"
        )


# -- one database -----------------------------------------------------------------


def run(kind: str, url: str, rows: int) -> list[tuple[str, str, str, str]]:
    """Every measurement on one database: (what, ours, reference, note)."""
    now = dt.datetime.now(dt.UTC)
    engine, table = prepare(url, rows, now)
    lines: list[tuple[str, str, str, str]] = []

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:,.1f} ms"

    since = now - dt.timedelta(hours=24)
    ours_s, ours = timed(lambda: report_figures(engine, table, since))
    ref_s, ref = timed(lambda: reference_report(engine, table, since))
    check_same(ours, ref)
    lines.append(("report --since 24h", ms(ours_s), ms(ref_s), "same figures"))
    if kind == "mariadb":
        lines.append(
            (
                "  MariaDB PERCENTILE_CONT",
                "",
                mariadb_window_report(engine, table, since),
                "the window function, one run",
            )
        )

    rng = random.Random(1)
    traces = []
    reference_traces = []
    with engine.connect() as conn:
        for _ in range(20):
            request_id = f"req-{rng.randrange(0, rows, 6) + 0:09d}"
            started = time.perf_counter()
            found = reading.events(conn, table, request_id=request_id, limit=1000)
            traces.append(time.perf_counter() - started)
            assert found, request_id
            started = time.perf_counter()
            conn.execute(
                sa.select(table)
                .where(table.c.request_id == request_id)
                .order_by(table.c.occurred_at)
            ).all()
            reference_traces.append(time.perf_counter() - started)
    lines.append(
        (
            "trace <id> (20 ids)",
            f"median {ms(statistics.median(traces))}, max {ms(max(traces))}",
            f"median {ms(statistics.median(reference_traces))}",
            "",
        )
    )

    with engine.connect() as conn:
        top = conn.execute(sa.select(sa.func.max(table.c.id))).scalar_one()
    pages = {
        "newest": None,
        "middle": top // 2,
        "oldest": 150,
    }
    for label, before in pages.items():
        with engine.connect() as conn:
            ours_s, page = timed(
                lambda b=before, c=conn: reading.events(c, table, before_id=b), 5
            )
            query = sa.select(table).order_by(table.c.id.desc()).limit(100)
            if before is not None:
                query = query.where(table.c.id < before)
            ref_s, _ = timed(lambda q=query, c=conn: c.execute(q).all(), 5)
        assert page
        lines.append((f"events(limit=100) {label} page", ms(ours_s), ms(ref_s), ""))
    with engine.connect() as conn:
        ours_s, page = timed(
            lambda c=conn: reading.events(c, table, min_severity="error"), 5
        )
        ref_s, _ = timed(
            lambda c=conn: c.execute(
                sa.select(table)
                .where(table.c.severity.in_(["error", "critical"]))
                .order_by(table.c.id.desc())
                .limit(100)
            ).all(),
            5,
        )
    lines.append(("events(min_severity=error)", ms(ours_s), ms(ref_s), ""))

    # prune: the older half, beside a writer at 1,000 events/s.
    cutoff = now - dt.timedelta(days=DAYS / 2)
    with engine.connect() as conn:
        expired = conn.execute(
            sa.select(sa.func.count()).where(
                table.c.occurred_at
                < (cutoff if kind == "postgresql" else cutoff.replace(tzinfo=None))
            )
        ).scalar_one()
    with Writer(engine, table) as writer:
        time.sleep(1)
        result = reading.prune(engine, table, cutoff=cutoff)
        time.sleep(1)
    assert result.deleted == expired, (result, expired)
    ours_note = writer.summary()
    # The reference: the same rows loaded again, one DELETE statement.
    load(engine, table, generate(rows, now, stop=expired))
    with Writer(engine, table) as ref_writer:
        time.sleep(1)
        started = time.perf_counter()
        bound = cutoff if kind == "postgresql" else cutoff.replace(tzinfo=None)
        with engine.begin() as conn:
            gone = conn.execute(
                table.delete().where(table.c.occurred_at < bound)
            ).rowcount
        ref_seconds = time.perf_counter() - started
        time.sleep(1)
    lines.append(
        (
            f"prune {result.deleted:,} rows",
            f"{result.deleted / result.seconds:,.0f} rows/s "
            f"({result.seconds:.1f} s, {result.batches} batches)",
            f"{gone / ref_seconds:,.0f} rows/s ({ref_seconds:.1f} s, one DELETE)",
            f"ours: {ours_note}; reference: {ref_writer.summary()}",
        )
    )
    engine.dispose()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--db", default="sqlite,postgresql,mariadb")
    args = parser.parse_args(argv)
    print(f"# flask_telemetry read side, {args.rows:,} rows, {machine()}")
    with tempfile.TemporaryDirectory(prefix="flask_telemetry_reading_") as workdir:
        for kind in args.db.split(","):
            with database(kind, workdir) as url:
                lines = run(kind, url, args.rows)
            print(f"\n## {kind}")
            width = max(len(line[0]) for line in lines)
            print(f"{'':<{width}}  {'flask_telemetry':<40}  hand-written SQL")
            for what, ours, ref, note in lines:
                print(f"{what:<{width}}  {ours:<40}  {ref}")
                if note:
                    print(f"{'':<{width}}    {note}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
