"""``python -m benchmarks.rollups``: rollups (issue 23) on a large table, per database.

Loads 90 days of ``http_request_end`` rows for 50 routes (by default
2,000,000 rows: a quarter of them spread over the 83 older days at a low
rate, three quarters in the last 7 days; three releases over the quarter)
into a database of its own on SQLite, PostgreSQL and MariaDB, then:

1. **Folding**: ``telemetry.rollup()`` folds every raw row (the first run
   of a table that had no rollups) while a writer stores 1,000 events/s
   through the project's own writer beside it: raw rows folded per minute
   (target >= 1,000,000), the writer's failures and its longest insert
   (target: none, at most 0.5 s).
2. **Storage** of the 90 days of rollups: bytes in total and per
   route-hour (PostgreSQL ``pg_total_relation_size``, MariaDB
   ``data_length + index_length``, SQLite ``dbstat`` or the file's growth).
3. **Reading**: ``telemetry.request_summary`` (the rollups' path) and
   ``flask telemetry report --json`` (in process, through the CLI runner)
   for the 24h, 7d, 30d and 90d windows, median of ``--repeat`` (5) after a
   warm-up (target <= 150 ms each), next to ``reading.request_summary`` on
   the raw rows for 24h and 7d (median of 3, or one run when it takes more
   than 5 s).
4. **Exactness**: for each window, the rollups' request and error counts
   against a raw ``COUNT(*)`` of the same window (equal, exactly), and
   p50/p95/p99 against the raw rows' exact ones (``reading.request_summary``):
   the largest relative error (target <= 1%).

``make bench`` runs it and publishes its table. Options: ``--rows N``,
``--db sqlite,postgresql,mariadb``, ``--repeat N``, ``--quick`` (200,000
rows), ``--json``. Servers as for ``make bench`` (``BENCH_POSTGRES_URL``,
``BENCH_MARIADB_URL``); the databases are created for the run and dropped
at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import Telemetry, reading

from . import report
from .common import machine
from .reading import Writer, database, load

NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}
ROUTES = 50
DAYS = 90
RECENT_DAYS = 7
#: The share of the rows in the last RECENT_DAYS days.
RECENT_SHARE = 0.75
RELEASES = (("v1.0", 90), ("v1.1", 55), ("v2.0", 20))  # (name, from days ago)
WINDOWS = (("24h", 1), ("7d", 7), ("30d", 30), ("90d", 90))
RAW_WINDOWS = ("24h", "7d")
READ_TARGET_S = 0.150
FOLD_TARGET_PER_MIN = 1_000_000
WAIT_TARGET_S = 0.5
ERROR_TARGET = 0.01
CHUNK = 20_000


def _log(message: str) -> None:
    print(
        f"[rollups {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True
    )


# -- the data set -----------------------------------------------------------------


def _release(days_ago: float) -> str:
    found = RELEASES[0][0]
    for name, since in RELEASES:
        if days_ago <= since:
            found = name
    return found


def generate(rows: int, now: dt.datetime) -> t.Iterator[list[tuple[t.Any, ...]]]:
    """The request ends, oldest first, in chunks (deterministic for ``rows``).

    Routes of Zipf-like popularity, each with its own typical duration
    (log-normal, durations rounded to 0.001 ms so that ties occur), 2% 4xx,
    0.5% 5xx, durations over 1 s marked slow.
    """
    rng = random.Random(23)
    old = rows - int(rows * RECENT_SHARE)
    recent_start = now - dt.timedelta(days=RECENT_DAYS)
    begin = now - dt.timedelta(days=DAYS)
    old_span = (recent_start - begin).total_seconds()
    recent_span = dt.timedelta(days=RECENT_DAYS).total_seconds()
    names = [f"api.resource_{i:02d}" for i in range(ROUTES)]
    weights = [1 / (i + 1) for i in range(ROUTES)]
    cumulative = [sum(weights[: i + 1]) for i in range(ROUTES)]
    scale = [2.0 + (i * 7 % 13) / 5 for i in range(ROUTES)]
    chunk: list[tuple[t.Any, ...]] = []
    for index in range(rows):
        if index < old:
            when = begin + dt.timedelta(seconds=old_span * index / old)
        else:
            offset = recent_span * (index - old) / (rows - old)
            when = recent_start + dt.timedelta(seconds=offset)
        pick = rng.random() * cumulative[-1]
        route = next(i for i, c in enumerate(cumulative) if pick <= c)
        duration = round(rng.lognormvariate(scale[route], 0.9), 3)
        draw = rng.random()
        status = 500 if draw < 0.005 else 404 if draw < 0.025 else 200
        metadata: dict[str, t.Any] = {
            "method": "GET",
            "status": status,
            "duration_ms": duration,
            "release": _release((now - when).total_seconds() / 86400),
        }
        severity = "error" if status >= 500 else "info"
        if duration > 1000:
            metadata["slow"] = True
            severity = "warning"
        chunk.append(
            (
                "user",
                index % 5000,
                "http_request_end",
                severity,
                f"req-{index:09d}",
                names[route],
                "203.0.113.7",
                "bench/1.0",
                metadata,
                when,
            )
        )
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def make_app(url: str) -> Flask:
    """An app on ``url`` with rollups on (sync delivery: nothing in the
    background)."""
    app = Flask("bench_rollups")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=url,
        TELEMETRY_DELIVERY="sync",
        TELEMETRY_ENABLED=True,
        TELEMETRY_ROLLUPS=True,
    )
    db = SQLAlchemy()
    db.init_app(app)
    Telemetry(app)
    return app


def prepare(app: Flask, rows: int, now: dt.datetime) -> None:
    """The trace table loaded, indexed and analysed; the rollup table empty."""
    telemetry = Telemetry.of(app)
    with app.app_context():
        engine = telemetry.engine
        table: sa.Table = telemetry.trace_model.__table__
        with engine.begin() as conn:
            conn.execute(sa.schema.CreateTable(table))
            telemetry.rollup_model.__table__.create(conn)
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


# -- measurements -----------------------------------------------------------------


def median_time(call: t.Callable[[], t.Any], repeat: int) -> tuple[float, t.Any]:
    """Median wall time of ``repeat`` calls after one warm-up (one call
    when the warm-up took more than 5 s), and the last result."""
    started = time.perf_counter()
    result = call()
    if time.perf_counter() - started > 5:
        repeat = 1
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def storage_bytes(engine: sa.Engine, table: str, sqlite_growth: int) -> int:
    """Bytes of ``table`` with its indexes."""
    with engine.connect() as conn:
        name = engine.dialect.name
        if name == "postgresql":
            return int(
                conn.exec_driver_sql(
                    f"SELECT pg_total_relation_size('{table}')"
                ).scalar_one()
            )
        if name in ("mysql", "mariadb"):
            conn.exec_driver_sql(f"ANALYZE TABLE {table}").all()
            return int(
                conn.exec_driver_sql(
                    "SELECT data_length + index_length FROM information_schema.tables"
                    " WHERE table_schema = DATABASE() AND table_name = %(t)s",
                    {"t": table},
                ).scalar_one()
            )
        try:
            names = [
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE tbl_name = ?", (table,)
                )
            ]
            marks = ", ".join("?" * len(names))
            return int(
                conn.exec_driver_sql(
                    f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks})",
                    tuple(names),
                ).scalar_one()
            )
        except sa.exc.OperationalError:  # no dbstat in this build
            return sqlite_growth


def _file_size(engine: sa.Engine) -> int:
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path:
        return 0
    return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))


def raw_counts(
    engine: sa.Engine, table: sa.Table, since: dt.datetime, until: dt.datetime
) -> dict[str | None, tuple[int, int]]:
    """Per route, (request ends, errors) of ``[since, until)`` by a plain
    ``COUNT(*)`` (every row is readable; errors: status >= 500)."""
    dialect = engine.dialect.name
    status = {
        "postgresql": "(metadata->>'status')::int",
        "sqlite": "json_extract(metadata, '$.status')",
    }.get(dialect, "JSON_VALUE(metadata, '$.status') + 0")
    if dialect == "sqlite":
        params: t.Any = tuple(
            b.replace(tzinfo=None).isoformat(" ", "microseconds")
            for b in (since, until)
        )
        marks = ("?", "?")
    else:
        params = {
            "since": since if dialect == "postgresql" else since.replace(tzinfo=None),
            "until": until if dialect == "postgresql" else until.replace(tzinfo=None),
        }
        marks = ("%(since)s", "%(until)s")
    sql = (
        f"SELECT route_name, COUNT(*), SUM(CASE WHEN {status} >= 500 THEN 1 ELSE 0 END)"
        f" FROM {table.name} WHERE event_type = 'http_request_end'"
        f" AND occurred_at >= {marks[0]} AND occurred_at < {marks[1]}"
        " GROUP BY route_name"
    )
    with engine.connect() as conn:
        return {
            r[0]: (int(r[1]), int(r[2] or 0)) for r in conn.exec_driver_sql(sql, params)
        }


def compare(
    ours: t.Sequence[reading.RouteSummary],
    exact: t.Sequence[reading.RouteSummary],
    counts: dict[str | None, tuple[int, int]],
) -> tuple[bool, float]:
    """Whether every count equals the raw one; the largest relative error
    of p50/p95/p99 against the exact percentiles."""
    mine = {s.route_name: s for s in ours}
    theirs = {s.route_name: s for s in exact}
    same = set(mine) == set(theirs) == set(counts)
    worst = 0.0
    for name, summary in mine.items():
        raw = theirs.get(name)
        if raw is None or name not in counts:
            same = False
            continue
        same = same and (summary.rows, summary.requests, summary.errors) == (
            counts[name][0],
            counts[name][0],
            counts[name][1],
        )
        same = same and summary.client_errors == raw.client_errors
        same = same and summary.slow == raw.slow
        for a, b in (
            (summary.p50_ms, raw.p50_ms),
            (summary.p95_ms, raw.p95_ms),
            (summary.p99_ms, raw.p99_ms),
        ):
            if b > 0:
                worst = max(worst, abs(a - b) / b)
            elif a != b:
                worst = math.inf
    return same, worst


def run(kind: str, url: str, rows: int, repeat: int) -> dict[str, t.Any]:
    """Every measurement on one database."""
    now = dt.datetime.now(dt.UTC)
    app = make_app(url)
    prepare(app, rows, now)
    telemetry = Telemetry.of(app)
    result: dict[str, t.Any] = {"db": kind, "rows": rows}
    with app.app_context():
        engine = telemetry.engine
        traces: sa.Table = telemetry.trace_model.__table__
        rollup_table: sa.Table = telemetry.rollup_model.__table__
        before = _file_size(engine)

        # 1. Folding every raw row, beside a writer at 1,000 events/s.
        with Writer(engine, traces) as writer:
            time.sleep(1)
            folded = telemetry.rollup()
            time.sleep(1)
        waits = writer.waits or [0.0]
        result["fold"] = {
            "rows": folded.rows,
            "buckets": folded.buckets,
            "seconds": round(folded.seconds, 2),
            "per_minute": round(folded.rows / folded.seconds * 60),
            "writer_stored": writer.stored,
            "writer_failures": writer.failures,
            "writer_max_s": round(max(waits), 4),
        }
        _log(f"{kind}: folded {json.dumps(result['fold'])}")

        # 2. Storage.
        with engine.connect() as conn:
            levels = dict(
                conn.execute(
                    sa.select(rollup_table.c.bucket_seconds, sa.func.count()).group_by(
                        rollup_table.c.bucket_seconds
                    )
                ).all()
            )
        size = storage_bytes(engine, rollup_table.name, _file_size(engine) - before)
        route_hours = ROUTES * DAYS * 24
        result["storage"] = {
            "bytes": size,
            "per_route_hour": round(size / route_hours, 1),
            "rows": {str(k): int(v) for k, v in sorted(levels.items())},
        }
        _log(f"{kind}: storage {json.dumps(result['storage'])}")

        # 3. and 4. Reading, and exactness, per window.
        runner = app.test_cli_runner()
        reads: list[dict[str, t.Any]] = []
        for label, days in WINDOWS:
            span = dt.timedelta(days=days)

            def summary(span: dt.timedelta = span) -> t.Any:
                return telemetry.request_summary(since=span)

            def cli(label: str = label) -> t.Any:
                answer = runner.invoke(
                    args=["telemetry", "report", "--since", label, "--json"]
                )
                if answer.exit_code != 0:
                    raise RuntimeError(f"report --since {label}: {answer.output}")
                return answer

            summary_s, _ = median_time(summary, repeat)
            report_s, _ = median_time(cli, repeat)
            counts_s, _ = median_time(
                lambda span=span: telemetry.event_counts(since=span), repeat
            )
            # The same window, fixed, read three ways.
            until = dt.datetime.now(dt.UTC)
            since = until - span
            ours = telemetry.request_summary(since=since, until=until)
            raw_s = None
            if label in RAW_WINDOWS:
                raw_s, exact = median_time(
                    lambda s=since, u=until: reading.request_summary(
                        engine, traces, since=s, until=u
                    ),
                    3,
                )
            else:
                started = time.perf_counter()
                exact = reading.request_summary(
                    engine, traces, since=since, until=until
                )
                raw_once = time.perf_counter() - started
            counts = raw_counts(engine, traces, since, until)
            same, worst = compare(ours, exact, counts)
            read = {
                "window": label,
                "summary_s": round(summary_s, 4),
                "report_s": round(report_s, 4),
                "event_counts_s": round(counts_s, 4),
                "raw_s": None if raw_s is None else round(raw_s, 4),
                "raw_once_s": round(raw_once, 4) if raw_s is None else None,
                "requests": sum(c[0] for c in counts.values()),
                "counts_exact": same,
                "max_error": worst,
            }
            reads.append(read)
            _log(f"{kind}: {json.dumps(read)}")
        result["reads"] = reads
    with app.app_context():
        telemetry.engine.dispose()
    return result


def collect(rows: int, kinds: list[str], repeat: int) -> list[dict[str, t.Any]]:
    """The measurements on each database in ``kinds``, each loaded with
    ``rows`` rows into a database of its own, dropped after."""
    results = []
    with tempfile.TemporaryDirectory(prefix="flask_telemetry_rollups_") as workdir:
        for kind in kinds:
            with database(kind, workdir) as url:
                results.append(run(kind, url, rows, repeat))
    return results


# -- the table --------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def table(results: list[dict[str, t.Any]], rows: int, repeat: int) -> report.Table:
    """The measurements as one table, a column per database."""
    body: list[list[str]] = []

    def line(what: str, cell: t.Callable[[dict[str, t.Any]], str]) -> None:
        body.append([what, *(cell(r) for r in results)])

    def read(r: dict[str, t.Any], label: str) -> dict[str, t.Any]:
        return next(x for x in r["reads"] if x["window"] == label)

    for label, _ in WINDOWS:
        line(
            f"request_summary {label}",
            lambda r, w=label: (
                f"{_ms(read(r, w)['summary_s'])}, "
                f"{_verdict(read(r, w)['summary_s'] <= READ_TARGET_S)}"
            ),
        )
    for label, _ in WINDOWS:
        line(
            f"report --json {label}",
            lambda r, w=label: (
                f"{_ms(read(r, w)['report_s'])}, "
                f"{_verdict(read(r, w)['report_s'] <= READ_TARGET_S)}"
            ),
        )
    for label, _ in WINDOWS:
        line(
            f"report's event_counts {label}",
            lambda r, w=label: _ms(read(r, w)["event_counts_s"]),
        )
    for label in RAW_WINDOWS:
        line(
            f"raw rows {label} (ratio)",
            lambda r, w=label: (
                f"{_ms(read(r, w)['raw_s'])} "
                f"({read(r, w)['raw_s'] / read(r, w)['summary_s']:,.0f}x)"
            ),
        )
    line(
        "counts = raw COUNT(*)",
        lambda r: (
            f"{sum(x['counts_exact'] for x in r['reads'])} of {len(r['reads'])} "
            "windows, " + _verdict(all(x["counts_exact"] for x in r["reads"]))
        ),
    )
    line(
        "p50/p95/p99 max error",
        lambda r: (
            f"{max(x['max_error'] for x in r['reads']) * 100:.2f}%, "
            + _verdict(max(x["max_error"] for x in r["reads"]) <= ERROR_TARGET)
        ),
    )
    line(
        "folding, raw rows/min",
        lambda r: (
            f"{r['fold']['per_minute']:,}, "
            + _verdict(r["fold"]["per_minute"] >= FOLD_TARGET_PER_MIN)
        ),
    )
    line(
        "writer: failures, max insert",
        lambda r: (
            f"{r['fold']['writer_failures']}, {_ms(r['fold']['writer_max_s'])}, "
            + _verdict(
                r["fold"]["writer_failures"] == 0
                and r["fold"]["writer_max_s"] <= WAIT_TARGET_S
            )
        ),
    )
    line(
        "storage, 90 days",
        lambda r: f"{r['storage']['bytes'] / 2**20:,.1f} MiB",
    )
    line("bytes per route-hour", lambda r: f"{r['storage']['per_route_hour']:,.0f}")
    line(
        "rollup rows (min/hour/day)",
        lambda r: "/".join(
            f"{r['storage']['rows'].get(str(level), 0):,}"
            for level in (60, 3600, 86400)
        ),
    )
    requests = {x["window"]: x["requests"] for x in results[0]["reads"]}
    return report.Table(
        title=(
            f"Rollups: 90 days, {ROUTES} routes, {rows:,} raw rows "
            "(targets: <= 150 ms, exact counts, <= 1%, >= 1M rows/min)"
        ),
        headers=["measure", *(NAMES.get(r["db"], r["db"]) for r in results)],
        rows=body,
        note=(
            f"{rows:,} raw request ends (the issue's target scale is 20M; "
            "``--rows`` changes it): a quarter over the 83 older days, the rest "
            "in the last 7 (windows of "
            + ", ".join(f"{k} {v:,}" for k, v in requests.items())
            + " requests). Times are the median of "
            f"{repeat} calls after a warm-up; ``report --json`` runs in process "
            "through the CLI runner: request_summary, and event_counts, which "
            "counts the raw rows of the window (no rollups; timed alone below "
            "it); raw rows: ``reading.request_summary`` (exact "
            "percentiles), median of 3, or one run when it takes over 5 s. "
            "Counts (requests, errors, client errors, slow) are compared with "
            "the raw rows of the same window, "
            "percentiles with their exact values. Folding: the first "
            "``telemetry.rollup()`` of every raw row, beside a writer storing "
            "1,000 events/s through the project's writer. Storage: "
            "pg_total_relation_size, data_length + index_length, SQLite's "
            "dbstat; per route-hour over 50 routes x 90 days. "
            "``python -m benchmarks.rollups`` runs this part alone."
        ),
    )


DOCS_HEADING = "Performance\n-----------\n"


def publish(
    text: str,
    readme: str = "README.rst",
    docs: str = "docs/rollups.rst",
    *,
    note: str = "",
) -> None:
    """Put the table ``text`` (RST) in the README's Performance section, in
    place of an earlier rollups table or before the section's end marker
    (what ``make bench`` writes there too), and as the Performance section
    of ``docs``."""
    with open(readme, encoding="utf-8") as source:
        content = source.read()
    start = content.index(report.START)
    end = content.index(report.END, start)
    earlier = content.find("**Rollups:", start, end)
    if earlier >= 0:
        after = content.find("\n\n**", earlier, end)
        stop = end if after < 0 else after + 2
        content = content[:earlier] + text + "\n\n" + content[stop:]
    else:
        content = content[:end] + text + "\n\n" + content[end:]
    with open(readme, "w", encoding="utf-8") as target:
        target.write(content)
    with open(docs, encoding="utf-8") as source:
        content = source.read()
    at = content.find(DOCS_HEADING)
    if at >= 0:
        content = content[:at].rstrip() + "\n"
    section = (
        f"\n{DOCS_HEADING}\n"
        "Measured by ``python -m benchmarks.rollups`` (a part of ``make bench``; "
        "see its docstring for the data set and each measurement) on "
        f"{dt.date.today().isoformat()}: {machine()}, PostgreSQL and MariaDB "
        f"on 127.0.0.1, a machine shared with other work.{note}\n\n"
        f"{text}\n\n"
        "Where the time goes. ``report`` adds ``event_counts``, which counts "
        "the raw rows of the whole window (the rollups keep request ends "
        "only), so its time grows with the raw rows. A rollups read costs one "
        "histogram per route and bucket: a 90-day window is about 90 day "
        "buckets per route and release, each histogram's JSON decoded and "
        "merged in Python (summing the bins in SQL with ``json_each`` was "
        "slower on SQLite and PostgreSQL). Folding takes a day of raw rows per "
        "transaction: on SQLite, whose locks cover the whole database, its "
        "upserts (and, in the default rollback journal, its read too) make "
        "the writer's commits wait for as long as the day takes, which is "
        "what the writer's failures there measure; PostgreSQL and MariaDB "
        "lock rows.\n"
    )
    with open(docs, "w", encoding="utf-8") as target:
        target.write(content + section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="200,000 rows")
    parser.add_argument("--db", default="sqlite,postgresql,mariadb")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="print (and --publish) the table of an earlier --json run",
    )
    parser.add_argument(
        "--note", default="", help="a sentence on the run for docs/rollups.rst"
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="write the table into README.rst and docs/rollups.rst",
    )
    args = parser.parse_args(argv)
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as saved:
            results = json.load(saved)
        rows = results[0]["rows"]
    else:
        results = collect(rows, args.db.split(","), args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"# flask_telemetry rollups, {rows:,} raw rows, {machine()}\n")
    text = table(results, rows, args.repeat).rst()
    print(text)
    if args.publish:
        publish(text, note=f" {args.note}" if args.note else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
