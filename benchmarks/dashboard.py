"""``python -m benchmarks.dashboard``: each dashboard page's server time on a
large table, per database.

Loads the read side's data set (``benchmarks.reading``: by default 2,000,000
rows, 1,000,000 ``http_request_end`` over 200 routes and 7 days and 1,000,000
other events) into a database of its own, serves the dashboard from an app
on it, and times each page through the WSGI interface (the server's time:
the queries and the rendering, no network), the median of ``--repeat``
requests after one warm-up request:

- overview, route (the busiest route) and events for the 1h, 24h and 7d
  windows,
- events filtered to one type and to a minimum severity, and an older page
  (``before_id``),
- trace of one request.

Target: every page in at most 1 s. ``make bench`` runs it (loading the
three databases takes about 6 minutes) and publishes the table. Options:
``--rows N``, ``--db sqlite,postgresql,mariadb``, ``--repeat N``,
``--json``. Servers as for ``make bench``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import typing as t

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import Telemetry
from flask_telemetry.dashboard import views

from . import report
from .common import machine
from .reading import database, prepare

NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}

TARGET_S = 1.0
WINDOWS = ("1h", "24h", "7d")


def pages(request_id: str, before_id: int) -> list[tuple[str, str]]:
    """(name, URL) of every page timed."""
    found: list[tuple[str, str]] = []
    for window in WINDOWS:
        found += [
            (f"overview {window}", f"/_telemetry/?window={window}"),
            (
                f"route {window}",
                f"/_telemetry/route?window={window}&name=api.resource_000",
            ),
            (f"events {window}", f"/_telemetry/events?window={window}"),
        ]
    found += [
        ("events 24h type", "/_telemetry/events?window=24h&event_type=cache_miss"),
        (
            "events 24h severity",
            "/_telemetry/events?window=24h&min_severity=error",
        ),
        ("events 7d route", "/_telemetry/events?window=7d&route=api.resource_1*"),
        ("events 7d older page", f"/_telemetry/events?window=7d&before_id={before_id}"),
        ("trace", f"/_telemetry/trace/{request_id}?window=24h"),
    ]
    return found


def dashboard_app(url: str) -> Flask:
    """An app on ``url`` with the dashboard open to every request."""
    app = Flask("bench_dashboard")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=url,
        TELEMETRY_DELIVERY="sync",
        TELEMETRY_ENABLED=True,
    )
    db = SQLAlchemy()
    db.init_app(app)
    telemetry = Telemetry(app)
    telemetry.init_dashboard(app, authorize=lambda: True)
    return app


def run(kind: str, url: str, rows: int, repeat: int) -> list[dict[str, t.Any]]:
    now = dt.datetime.now(dt.UTC)
    engine, _ = prepare(url, rows, now)
    engine.dispose()
    app = dashboard_app(url)
    client = app.test_client()
    # A request in the middle of the last day, and an id half-way down.
    request_id = f"req-{(rows - rows // 14) // 2 * 2:09d}"
    results = []
    for name, path in pages(request_id, before_id=rows // 2):
        times = []
        stopped = False
        for attempt in range(repeat + 1):
            started = time.perf_counter()
            response = client.get(path)
            took = time.perf_counter() - started
            if response.status_code == 503:  # the query time limit stopped it
                stopped = True
                times = [took]
                break
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}")
            if attempt:  # the first request warms the caches
                times.append(took)
        seconds = statistics.median(times)
        results.append(
            {
                "db": kind,
                "page": name,
                "path": path,
                "seconds": round(seconds, 4),
                "stopped": stopped,
                "ok": seconds <= TARGET_S and not stopped,
            }
        )
        note = "  STOPPED by the time limit" if stopped else ""
        note = note or ("" if seconds <= TARGET_S else "  OVER 1 s")
        print(
            f"  {kind:<10} {name:<22} {seconds * 1000:8.1f} ms{note}",
            file=sys.stderr,
            flush=True,
        )
    return results


def collect(rows: int, kinds: list[str], repeat: int) -> list[dict[str, t.Any]]:
    """Every page's time on each database in ``kinds``, each loaded with
    ``rows`` rows into a database of its own, dropped after."""
    results: list[dict[str, t.Any]] = []
    with tempfile.TemporaryDirectory(prefix="flask_telemetry_dash_") as workdir:
        for kind in kinds:
            with database(kind, workdir) as url:
                results += run(kind, url, rows, repeat)
    return results


def table(results: list[dict[str, t.Any]], rows: int, repeat: int) -> report.Table:
    """The page times as a table for the README, each against the target."""
    kinds = list(dict.fromkeys(r["db"] for r in results))
    names = list(dict.fromkeys(r["page"] for r in results))
    by = {(r["db"], r["page"]): r for r in results}
    body = []
    for name in names:
        cells = []
        for kind in kinds:
            found = by.get((kind, name))
            if found is None:
                cells.append("n/a")
            elif found["stopped"]:
                cells.append("stopped, missed")
            else:
                verdict = "met" if found["ok"] else "missed"
                cells.append(f"{found['seconds'] * 1000:,.0f} ms, {verdict}")
        body.append([name, *cells])
    missed = sum(1 for r in results if not r["ok"])
    return report.Table(
        title=f"Dashboard: server time per page on {rows:,} rows (target <= 1 s)",
        headers=["page", *[NAMES.get(k, k) for k in kinds]],
        rows=body,
        note=(
            f"Median of {repeat} requests after a warm-up one, through the WSGI "
            "interface (queries and rendering, no network); the target is a "
            "time, so times are shown. Windows of more than "
            f"{2 * views.SAMPLE_ROWS:,} requests are read from a sample of "
            "time slices (the page says so; ``exact=1`` reads every row). "
            f"{len(results) - missed} of {len(results)} pages met the target. "
            "``python -m benchmarks.dashboard`` runs this part alone."
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--db", default="sqlite,postgresql,mariadb")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = collect(args.rows, args.db.split(","), args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    kinds = list(dict.fromkeys(r["db"] for r in results))
    names = list(dict.fromkeys(r["page"] for r in results))
    by = {(r["db"], r["page"]): r for r in results}
    print(f"# flask_telemetry dashboard, {args.rows:,} rows, {machine()}")
    print(f"# server time per page, median of {args.repeat}; target <= 1 s\n")
    print(f"{'page':<22}" + "".join(f"{k:>12}" for k in kinds))
    for name in names:
        cells = "".join(_cell(by.get((k, name))) for k in kinds)
        print(f"{name:<22}{cells}")
    print("\n* stopped by the dashboard's query time limit (503)")
    slow = [r for r in results if not r["ok"]]
    return 1 if slow else 0


def _cell(result: dict[str, t.Any] | None) -> str:
    if result is None:
        return f"{'-':>12}"
    mark = "*" if result["stopped"] else " "
    return f"{result['seconds'] * 1000:>9.0f} ms{mark}"


if __name__ == "__main__":
    sys.exit(main())
