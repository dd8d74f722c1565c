"""Run every part of the benchmark, print the tables, publish them.

``python -m benchmarks`` (what ``make bench`` runs) takes about 25 minutes
on 2 cores (7 of them loading 2,000,000 rows into each database for the
dashboard's pages); ``--quick`` is a smoke run of a few minutes whose figures are too
noisy to publish, so it only prints them unless ``--publish`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import time
import typing as t
from importlib import metadata

from . import (
    breakdown,
    dashboard,
    db_instructions,
    fleet,
    ingest,
    inprocess,
    instructions,
    memory,
    realhttp,
    report,
    rollups,
    slow_query,
    syncpg,
)
from .apps import Variant
from .common import FULL, QUICK, Relative, Scale, Summary, databases, machine, summarize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
CHART = os.path.join("docs", "_static", "benchmark.png")
TARGETS = {
    "request_path": 0.90,
    "saturated_sqlite": 0.70,
    "ingest": 0.60,
    "sync_postgres": 1.2,
}
#: Issue 13: at the limit under full load.
TARGETS_13 = {
    "writer_vs_dbapi": 2.0,  # at most: writer instructions per event / DBAPI's
    "saturated": 0.80,
    "http": 0.85,
    "http_vs_otel": 1.25,
    "http_p99": 1.3,  # at most
    "request_path": 0.90,
    "ingest_vs_core": 1.0,
}
#: Issue 14: what slow-query timing may cost a statement that is not slow.
SLOW_QUERY_TARGET_US = 2.0
DB_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _pairs(chosen: list[Variant]) -> list[tuple[Variant, Variant | None]]:
    """(end-only variant, its +record() twin or None), in table order."""
    by_key = {v.key: v for v in chosen}
    out = []
    for variant in chosen:
        if not variant.extra:
            twin = dataclasses.replace(variant, extra=True)
            out.append((variant, by_key.get(twin.key)))
    return out


def _throughput(ratios: dict[str, list[Relative]], key: str) -> Summary:
    return summarize([r.throughput for r in ratios[key]])


def _cell(summary: Summary | None) -> str:
    return "n/a" if summary is None else summary.ratio()


def inprocess_table(
    chosen: list[Variant], ratios: dict[str, list[Relative]], rounds: int
) -> report.Table:
    rows = [["bare Flask", "1.00", "1.00"]]
    for plain, extra in _pairs(chosen):
        rows.append(
            [
                plain.label,
                _cell(_throughput(ratios, plain.key)),
                _cell(None if extra is None else _throughput(ratios, extra.key)),
            ]
        )
    return report.Table(
        title="In-process (Flask test client): throughput relative to bare Flask",
        headers=["configuration", "request end only", "+ 1 record() per request"],
        rows=rows,
        note=(
            f"Median (25th-75th percentile) of {rounds} rounds; each block ran "
            "between two bare blocks (A B A C A ...), order shuffled per round. "
            "*Request path*: the writer sleeps through the block (flush interval "
            "3600 s) and flushes after the clock stops. *Saturated*: default "
            "settings, and the block ends when ``flush()`` has stored every event. "
            "OpenTelemetry's block ends with ``force_flush()``; its extra event is "
            "a child span. Flask-MonitoringDashboard has no event API."
        ),
    )


def cpu_table(chosen: list[Variant], ratios: dict[str, list[Relative]]) -> report.Table:
    """Where a request's CPU goes in the in-process blocks, by thread."""
    rows = []
    for variant in chosen:
        if variant.extra or variant.kind not in ("sqla", "async-idle", "async"):
            continue
        values = ratios[variant.key]
        main = [r.main_cpu for r in values if r.main_cpu is not None]
        writer = [r.writer_cpu for r in values if r.writer_cpu is not None]
        if not main or not writer:
            continue
        both = [m + w for m, w in zip(main, writer, strict=True)]
        rows.append(
            [
                variant.label,
                _throughput(ratios, variant.key).ratio(),
                summarize(main).ratio(),
                summarize(writer).ratio(),
                summarize(both).ratio(),
            ]
        )
    return report.Table(
        title="In-process: CPU per request by thread, relative to bare Flask's",
        headers=[
            "configuration",
            "throughput",
            "serving thread",
            "writer thread",
            "both",
        ],
        rows=rows,
        note=(
            "The blocks of the in-process table: each thread's CPU time over the "
            "block (its catch-up included) per request, over the CPU time per "
            "request of the bare blocks' serving thread. The serving thread does "
            "the same work with the writer asleep (*request path*) and with it "
            "storing the events (*saturated*); what it takes more in the second "
            "is what sharing the GIL and the machine with the writer costs it."
        ),
    )


def http_table(
    chosen: list[Variant],
    ratios: dict[str, list[Relative]],
    bare_rate: float,
    rounds: int,
) -> report.Table:
    def cells(variant: Variant | None) -> list[str]:
        if variant is None:
            return ["n/a", "n/a", "n/a"]
        values = ratios[variant.key]
        return [
            summarize([r.throughput for r in values]).ratio(),
            f"{summarize([r.p50 for r in values]).median:.2f}",
            f"{summarize([r.p99 for r in values]).median:.2f}",
        ]

    rows = [["bare Flask", "1.00", "1.00", "1.00", "1.00", "1.00", "1.00"]]
    for plain, extra in _pairs(chosen):
        label = plain.label.replace(", saturated", "")
        rows.append([label, *cells(plain), *cells(extra)])
    return report.Table(
        title="Real HTTP (gunicorn, 2 sync workers): relative to bare Flask",
        headers=[
            "configuration",
            "req/s",
            "p50",
            "p99",
            "req/s +record()",
            "p50 +record()",
            "p99 +record()",
        ],
        rows=rows,
        note=(
            f"Throughput: median (25th-75th percentile) of {rounds} rounds; "
            "latency: median over rounds of p50 and p99, as multiples of bare "
            "(lower is better). The load comes from another process, 4 requests "
            "in flight, a new connection each, 127.0.0.1 only; bare served about "
            f"{bare_rate:,.0f} req/s in this run. Telemetry runs with its defaults "
            "(the writer keeps up during the block)."
        ),
    )


def ingest_table(
    results: dict[str, dict[str, list[float]]], rounds: int
) -> report.Table:
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}
    rows = []
    for db, values in results.items():
        raw = summarize(values["raw_cpu"]).median
        request = summarize(values["request_cpu"]).median
        writer = summarize(values["writer_cpu"]).median
        rows.append(
            [
                names[db],
                summarize(values["ratio"]).ratio(),
                f"{request / raw:.2f}",
                f"{writer / raw:.2f}",
                f"{request * 1e6:.0f} / {writer * 1e6:.0f} / {raw * 1e6:.0f}",
            ]
        )
    return report.Table(
        title="Sustained ingest: flask_telemetry async next to raw executemany",
        headers=[
            "database",
            "events/s vs raw",
            "CPU: request path",
            "CPU: writer",
            "CPU us/event: path / writer / raw",
        ],
        rows=rows,
        note=(
            f"Median (25th-75th percentile) of {rounds} rounds. Raw: SQLAlchemy "
            "Core executemany of identical prebuilt rows, 500 per transaction "
            "(the writer's batch size). CPU is per event, per thread, as a "
            "multiple of raw executemany's CPU per row."
        ),
    )


def sync_table(results: dict[str, list[float]], rounds: int) -> report.Table:
    return report.Table(
        title="Sync delivery on PostgreSQL: time per event relative to raw",
        headers=["what", "time vs raw INSERT + COMMIT"],
        rows=[
            ["raw single-row INSERT + COMMIT", "1.00"],
            [
                "raw, after SET LOCAL lock/statement timeouts",
                summarize(results["timeouts"]).ratio(),
            ],
            [
                "flask_telemetry sync record() (defaults: durable commit)",
                summarize(results["sync"]).ratio(),
            ],
            [
                "flask_telemetry sync record(), TELEMETRY_DURABLE_COMMIT = False",
                summarize(results["relaxed"]).ratio(),
            ],
        ],
        note=(
            f"Median (25th-75th percentile) of {rounds} rounds; lower is better. "
            "The raw insert commits with the server's synchronous_commit (on), "
            "as telemetry does by default, so that row compares like with like. "
            "Sync record() hands the event to telemetry's writer thread and "
            "waits for it (TELEMETRY_SYNC_DEADLINE_MS), which costs a thread "
            "hand-off per event."
        ),
    )


def memory_table(results: dict[str, dict[str, t.Any]], events: int) -> report.Table:
    rows = []
    healthy_cost = results["healthy"]["record_s"]
    for scenario, label in (("healthy", "database healthy"), ("down", "database down")):
        data = results[scenario]
        dropped = data["dropped"] or {}
        rows.append(
            [
                label,
                f"{data['rss_before_mb']:.0f}",
                f"{data['rss_after_mb']:.0f}",
                f"{data['rss_after_mb'] - data['rss_before_mb']:+.1f}",
                f"{data['written']:,}",
                f"{dropped.get('queue_full', 0):,}",
                f"{data['record_s'] / healthy_cost:.2f}",
            ]
        )
    return report.Table(
        title=f"Memory: RSS around {events:,} events (async, PostgreSQL)",
        headers=[
            "scenario",
            "RSS before MiB",
            "after MiB",
            "growth MiB",
            "written",
            "dropped queue_full",
            "record() time vs healthy",
        ],
        rows=rows,
        note=(
            "Healthy: chunks of 5,000 with a flush between (nothing dropped). "
            "Down: the URL points at a closed 127.0.0.1 port; the default queue "
            "(10,000) fills and the rest is dropped and counted."
        ),
    )


def breakdown_table(steps: list[tuple[str, float | None]]) -> report.Table:
    bare = steps[0][1] if steps and steps[0][1] else float("nan")
    rows = [
        [
            label,
            "n/a" if value is None else f"{value:.1f}",
            "n/a" if value is None else f"{value / bare:.3f}",
        ]
        for label, value in steps
    ]
    return report.Table(
        title="Hot path, async mode: cost of each step",
        headers=["step", "us per call or event", "share of a bare request"],
        rows=rows,
        note=(
            "Best of three loops; wall time on this machine, so compare the "
            "shares. The writer's steps run on the writer thread, off the "
            "request path, and bound the saturated and ingest figures."
        ),
    )


def targets(
    inproc: dict[str, list[Relative]],
    ingest_results: dict[str, dict[str, list[float]]],
    sync_results: dict[str, list[float]],
) -> report.Table:
    rows = []

    def add(what: str, value: float, goal: float, *, at_most: bool = False) -> None:
        met = value <= goal if at_most else value >= goal
        sign = "<=" if at_most else ">="
        rows.append(
            [what, f"{value:.2f}", f"{sign} {goal:.2f}", "met" if met else "missed"]
        )

    for db in ("sqlite", "postgresql", "mariadb"):
        key = Variant(kind="async-idle", db=db).key
        add(
            f"async request path, {db}",
            _throughput(inproc, key).median,
            TARGETS["request_path"],
        )
    key = Variant(kind="async", db="sqlite").key
    add(
        "async saturated, sqlite",
        _throughput(inproc, key).median,
        TARGETS["saturated_sqlite"],
    )
    for db, values in ingest_results.items():
        add(
            f"sustained ingest vs raw, {db}",
            summarize(values["ratio"]).median,
            TARGETS["ingest"],
        )
    add(
        "sync on postgresql vs raw insert+commit (defaults: durable)",
        summarize(sync_results["sync"]).median,
        TARGETS["sync_postgres"],
        at_most=True,
    )
    add(
        "sync on postgresql vs raw insert+commit (TELEMETRY_DURABLE_COMMIT = False)",
        summarize(sync_results["relaxed"]).median,
        TARGETS["sync_postgres"],
        at_most=True,
    )
    return report.Table(
        title="Targets (issue 5)",
        headers=["measure", "median", "target", "status"],
        rows=rows,
    )


def slow_query_table(
    bare: float, timed: float, counted: float, rounds: int
) -> report.Table:
    """What slow-query timing costs a statement that is not slow (issue 14),
    and the timing with the statement counted in a request (issue 24)."""
    cost_us = (timed - bare) * 1e6
    return report.Table(
        title="Slow-query integration",
        headers=["measure", "µs per statement", "target", "status"],
        rows=[
            [
                "no instrumentation (SELECT 1, in-memory SQLite)",
                f"{bare * 1e6:.2f}",
                "",
                "",
            ],
            ["TELEMETRY_SLOW_QUERY_MS set, none slow", f"{timed * 1e6:.2f}", "", ""],
            [
                "cost of the timing",
                f"{cost_us:.2f}",
                f"< {SLOW_QUERY_TARGET_US:.1f}",
                "met" if cost_us < SLOW_QUERY_TARGET_US else "missed",
            ],
            [
                "timing and counting (request tally open)",
                f"{counted * 1e6:.2f}",
                "",
                "",
            ],
            [
                "cost of timing and counting / cost of the timing",
                f"{(counted - bare) / (timed - bare):.2f}x" if timed > bare else "n/a",
                "<= 1.5x (instructions below)",
                "",
            ],
        ],
        note=(
            f"CPU time of the main thread, median of {rounds} alternating blocks "
            "of each kind (``python -m benchmarks.slow_query``)."
        ),
    )


def instructions_table(counts: instructions.Counts) -> report.Table:
    labels = {
        "bare": "bare Flask",
        "sqla": "bare Flask + Flask-SQLAlchemy (reference)",
        "async-idle-sqlite": "flask_telemetry async, request path (writer idle)",
        "async-idle-sqlite-extra": "  + 1 record() per request",
    }
    bare = counts.request.get("bare")
    rows = [
        [labels.get(key, key), f"{value:,.0f}", f"{bare / value:.3f}" if bare else ""]
        for key, value in counts.request.items()
    ]
    for db, pair in counts.writer.items():
        rows.append(
            [
                f"writer, per event, {DB_NAMES[db]}: flask_telemetry / plain DBAPI",
                f"{pair['writer']:,.0f} / {pair['raw']:,.0f}",
                f"{pair['writer'] / pair['raw']:.2f}x",
            ]
        )
    return report.Table(
        title="Instructions per request and per event (callgrind)",
        headers=["what", "instructions", "bare / this, or writer / DBAPI"],
        rows=rows,
        note=(
            "Counted by ``python -m benchmarks.instructions`` under valgrind's "
            "callgrind: fixed loops, the same to a fraction of a percent whatever "
            "else runs; user-space instructions of this process only (a system "
            "call counts as one; the database servers are not counted). Request "
            f"path: {instructions.REQUESTS} ``GET /hello`` through the test "
            "client, SQLite. Writer: the writer thread's work for "
            f"{instructions.EVENTS} queued events (one ``http_request_end`` and "
            "one ``record()`` with metadata per request), validation and COMMIT "
            "included, in batches of 500; plain DBAPI: the same rows as tuples "
            "(``json.dumps`` and the timestamp included) by sqlite3 "
            "``executemany``, psycopg ``COPY ... FROM STDIN`` and PyMySQL "
            "``executemany`` (a multi-row INSERT), 500 per transaction."
        ),
    )


def targets_13(
    inproc: dict[str, list[Relative]],
    http: dict[str, list[Relative]],
    ingest_results: dict[str, dict[str, list[float]]],
    counts: instructions.Counts | None,
) -> report.Table:
    rows = []

    def add(
        what: str,
        value: float | None,
        goal: float,
        count: str,
        *,
        at_most: bool = False,
    ) -> None:
        if value is None:
            rows.append([what, "n/a", "", count, "n/a"])
            return
        met = value <= goal if at_most else value >= goal
        sign = "<=" if at_most else ">="
        rows.append(
            [
                what,
                f"{value:.3f}",
                f"{sign} {goal:.2f}",
                count,
                "met" if met else "missed",
            ]
        )

    request = counts.request if counts else {}
    writer = counts.writer if counts else {}
    bare = request.get("bare")
    path = request.get("async-idle-sqlite")
    for db in ("sqlite", "postgresql", "mariadb"):
        pair = writer.get(db)
        add(
            f"1. writer CPU per event vs plain DBAPI bulk, {DB_NAMES[db]}",
            pair["writer"] / pair["raw"] if pair else None,
            TARGETS_13["writer_vs_dbapi"],
            f"{pair['writer']:,.0f} / {pair['raw']:,.0f} per event" if pair else "",
            at_most=True,
        )
    for db in ("sqlite", "postgresql", "mariadb"):
        key = Variant(kind="async", db=db).key
        event = writer.get(db, {}).get("writer")
        count = ""
        if bare and path and event:
            count = (
                f"bare / (path + writer) = {bare:,.0f} / "
                f"({path:,.0f} + {event:,.0f}) = {bare / (path + event):.2f}"
            )
        add(
            f"2. saturated (test client, defaults), {DB_NAMES[db]}",
            _throughput(inproc, key).median if key in inproc else None,
            TARGETS_13["saturated"],
            count,
        )
    otel = Variant(kind="otel").key
    otel_ratio = _throughput(http, otel).median if otel in http else None
    for db in ("sqlite", "postgresql", "mariadb"):
        key = Variant(kind="async", db=db).key
        ratio = _throughput(http, key).median if key in http else None
        add(
            f"3. real HTTP req/s vs bare, async {DB_NAMES[db]}",
            ratio,
            TARGETS_13["http"],
            "",
        )
        add(
            f"3. real HTTP ratio vs OpenTelemetry's, async {DB_NAMES[db]}",
            ratio / otel_ratio if ratio and otel_ratio else None,
            TARGETS_13["http_vs_otel"],
            "",
        )
        add(
            f"3. real HTTP p99 vs bare, async {DB_NAMES[db]}",
            summarize([r.p99 for r in http[key]]).median if key in http else None,
            TARGETS_13["http_p99"],
            "",
            at_most=True,
        )
    for db in ("sqlite", "postgresql", "mariadb"):
        key = Variant(kind="async-idle", db=db).key
        count = ""
        if db == "sqlite" and bare and path:
            count = f"bare / path = {bare:,.0f} / {path:,.0f} = {bare / path:.3f}"
        add(
            f"4. request path (writer idle), {DB_NAMES[db]}",
            _throughput(inproc, key).median if key in inproc else None,
            TARGETS_13["request_path"],
            count,
        )
    for db, values in ingest_results.items():
        add(
            f"5. sustained ingest vs SQLAlchemy Core executemany, {DB_NAMES[db]}",
            summarize(values["ratio"]).median,
            TARGETS_13["ingest_vs_core"],
            "",
        )
    return report.Table(
        title="Targets (issue 13)",
        headers=["measure", "median", "target", "instructions (callgrind)", "status"],
        rows=rows,
        note=(
            "Ratios from the tables above (medians of the interleaved rounds); "
            "target 1 is the instruction ratio itself. Instructions: per request "
            "on the request path and per event on the writer, from the "
            "instruction table; for target 2, the bare request over the request "
            "path plus the writer's work per event (the mix counted above), the "
            "figure a machine whose CPU is the bound would give."
        ),
    )


def bars(
    chosen: list[Variant], ratios: dict[str, list[Relative]], extra: bool
) -> list[report.Bar]:
    out = [report.Bar(label="bare", median=1.0, low=1.0, high=1.0)]
    for plain, twin in _pairs(chosen):
        variant = twin if extra else plain
        if variant is None:
            out.append(report.Bar(label=plain.short, median=0.0, low=0.0, high=0.0))
            continue
        s = _throughput(ratios, variant.key)
        out.append(
            report.Bar(label=plain.short, median=s.median, low=s.low, high=s.high)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short, noisy smoke run")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="write the README section and the chart even with --quick",
    )
    parser.add_argument("--no-publish", action="store_true", help="print only")
    args = parser.parse_args(argv)
    scale: Scale = QUICK if args.quick else FULL
    publish = (not args.quick or args.publish) and not args.no_publish
    command = "make bench" if not args.quick else "python -m benchmarks --quick"
    began = time.monotonic()
    os.chdir(ROOT)
    raw: dict[str, t.Any] = {"scale": dataclasses.asdict(scale)}
    with databases() as urls:
        _log("instruction counts (callgrind)")
        try:
            counts: instructions.Counts | None = instructions.run(
                urls.workdir, urls.postgres, urls.mariadb
            )
        except Exception as exc:  # no valgrind, or internals moved
            _log(f"instruction counts skipped: {exc!r}")
            counts = None
        _log("database time instruction counts (callgrind)")
        try:
            db_counts: dict[str, float] | None = db_instructions.run(urls.workdir)
        except Exception as exc:  # no valgrind, or internals moved
            _log(f"database time instruction counts skipped: {exc!r}")
            db_counts = None
        _log("in-process rounds")
        chosen, inproc, bares = inprocess.run(
            urls,
            rounds=scale.rounds,
            requests=scale.requests,
            max_seconds=scale.block_seconds,
        )
        _log("real HTTP rounds")
        http_chosen, http, http_bares = realhttp.run(
            urls,
            rounds=scale.http_rounds,
            requests=scale.http_requests,
            max_seconds=scale.block_seconds + 1.0,
            logs=RESULTS,
        )
        _log("sustained ingest")
        ingest_results = ingest.run(
            urls, rounds=scale.ingest_rounds, events=scale.ingest_events
        )
        _log("sync on PostgreSQL vs raw")
        sync_results = syncpg.run(
            urls, rounds=scale.sync_rounds, events=scale.sync_events
        )
        _log("fleet ingest (1, 4, 16 processes; direct, PgBouncer; partitions)")
        fleet_seconds = 2.0 if args.quick else 8.0
        try:
            fleet_cells: list[fleet.Cell] | None = fleet.run(seconds=fleet_seconds)
        except Exception as exc:  # a server down: keep the run's other results
            _log(f"fleet ingest skipped: {exc!r}")
            fleet_cells = None
        _log("memory")
        memory_results = memory.run(urls.postgres, scale.memory_events)
        _log("slow-query timing")
        slow_rounds = 5 if args.quick else 15
        slow = slow_query.measure(slow_rounds, 20_000)
        _log("hot path breakdown and profiles")
        try:
            steps = breakdown.steps(urls, 4000 if not args.quick else 2000)
        except Exception as exc:  # internals moved: keep the run's results
            _log(f"breakdown skipped: {exc!r}")
            steps = [("bare request (reference)", None)]
        try:
            profile_files = breakdown.profiles(urls, RESULTS, 3000)
        except Exception as exc:  # internals moved: keep the run's results
            _log(f"profiles skipped: {exc!r}")
            profile_files = []
    _log("dashboard pages on a large table")
    dash_rows = 200_000 if args.quick else 2_000_000
    dash_repeat = 3
    try:
        dash: list[dict[str, t.Any]] | None = dashboard.collect(
            dash_rows, ["sqlite", "postgresql", "mariadb"], dash_repeat
        )
    except Exception as exc:  # a server down: keep the run's other results
        _log(f"dashboard pages skipped: {exc!r}")
        dash = None
    _log("rollups on a large table")
    roll_rows = 200_000 if args.quick else 2_000_000
    roll_repeat = 5
    try:
        roll: list[dict[str, t.Any]] | None = rollups.collect(
            roll_rows, ["sqlite", "postgresql", "mariadb"], roll_repeat
        )
    except Exception as exc:  # a server down: keep the run's other results
        _log(f"rollups skipped: {exc!r}")
        roll = None
    bare_http_rate = summarize([b.rate for b in http_bares]).median
    tables = [
        inprocess_table(chosen, inproc, scale.rounds),
        cpu_table(chosen, inproc),
        http_table(http_chosen, http, bare_http_rate, scale.http_rounds),
        ingest_table(ingest_results, scale.ingest_rounds),
        sync_table(sync_results, scale.sync_rounds),
        memory_table(memory_results, scale.memory_events),
        breakdown_table(steps),
        targets(inproc, ingest_results, sync_results),
    ]
    if counts is not None:
        tables.insert(-1, instructions_table(counts))
    tables.append(targets_13(inproc, http, ingest_results, counts))
    tables.append(slow_query_table(*slow, slow_rounds))
    if db_counts is not None:
        tables.append(db_instructions.table(db_counts))
    if dash is not None:
        tables.append(dashboard.table(dash, dash_rows, dash_repeat))
    if fleet_cells is not None:
        tables.append(fleet.table(fleet_cells, fleet_seconds))
    if roll is not None:
        tables.append(rollups.table(roll, roll_rows, roll_repeat))
    minutes = (time.monotonic() - began) / 60
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in (
            "flask",
            "sqlalchemy",
            "marshmallow",
            "opentelemetry-sdk",
            "flask-monitoringdashboard",
        )
    )
    preamble = (
        f"Measured by ``{command}`` on {dt.date.today().isoformat()}: "
        f"{machine()}, Python {platform.python_version()}, {versions}; "
        f"PostgreSQL and MariaDB on 127.0.0.1; the run took {minutes:.0f} minutes. "
        "Every figure is a ratio to the bare app (or to raw SQLAlchemy) measured "
        "in the same run; the machine is shared, so absolute times are not shown "
        "except where noted. Reproduce with ``make bench``."
    )
    print()
    print(report.section(tables, preamble=preamble, image=None))
    raw.update(
        inprocess={k: [dataclasses.asdict(r) for r in v] for k, v in inproc.items()},
        inprocess_bare=[dataclasses.asdict(b) for b in bares],
        http={k: [dataclasses.asdict(r) for r in v] for k, v in http.items()},
        http_bare=[dataclasses.asdict(b) for b in http_bares],
        ingest=ingest_results,
        sync=sync_results,
        memory=memory_results,
        steps=steps,
        instructions=dataclasses.asdict(counts) if counts else None,
        slow_query={"bare": slow[0], "timed": slow[1], "counted": slow[2]},
        db_instructions=db_counts,
        dashboard=dash,
        fleet=[dataclasses.asdict(c) for c in fleet_cells or []],
        rollups=roll,
    )
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"results-{scale.name}.json"), "w") as out:
        json.dump(raw, out, indent=1)
    for path in profile_files:
        print(f"profile: {os.path.relpath(path, ROOT)}")
    if publish:
        report.chart(
            CHART,
            [
                (
                    "in-process (Flask test client)",
                    [
                        ("request end only", bars(chosen, inproc, False)),
                        ("+ 1 record()", bars(chosen, inproc, True)),
                    ],
                ),
                (
                    "gunicorn, 2 workers, real HTTP",
                    [
                        ("request end only", bars(http_chosen, http, False)),
                        ("+ 1 record()", bars(http_chosen, http, True)),
                    ],
                ),
            ],
            f"{machine()}, {dt.date.today().isoformat()}; median, interquartile range",
        )
        report.update_readme(
            "README.rst", report.section(tables, preamble=preamble, image=CHART)
        )
        print(f"wrote {CHART} and the Performance section of README.rst")
    _log(f"done in {minutes:.1f} minutes")
    return 0
