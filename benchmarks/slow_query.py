"""What slow-query timing costs a statement that is not slow.

``python -m benchmarks.slow_query [--rounds N] [--statements N]`` runs the
same statement (``SELECT 1`` on an in-memory SQLite database, the cheapest
statement SQLAlchemy can execute, so the difference shows the most) on one
engine without instrumentation and with
:mod:`flask_telemetry.integrations.sqlalchemy` enabled and a threshold no
statement reaches. Blocks of the two alternate; each block's cost is the
main thread's CPU time (``time.thread_time``) per statement, and the median
of the blocks of each kind is printed side by side with the difference:
what the two event listeners cost per statement (target: under 2 µs).
A third kind runs with a request's tally open (statements counted and
grouped by shape, as in a request): its cost against the timing alone is
the counting's (target: the whole at most 1.5x the timing's cost).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import ConfigVars, Telemetry
from flask_telemetry.integrations import sqlalchemy as slow_queries
from flask_telemetry.integrations._db_time import Tally, current_tally


def _block(conn: sa.Connection, statement: sa.Executable, count: int) -> float:
    """CPU seconds per statement for ``count`` executions."""
    execute = conn.execute
    gc.collect()
    gc.disable()
    try:
        started = time.thread_time()
        for _ in range(count):
            execute(statement)
        return (time.thread_time() - started) / count
    finally:
        gc.enable()


def measure(rounds: int, statements: int) -> tuple[float, float, float]:
    """Median seconds per statement: (bare, instrumented, counted)."""
    app = Flask("slow_query_bench")
    app.config.update(
        SQLALCHEMY_DATABASE_URI="sqlite://",
        **{ConfigVars.DELIVERY: "sync", ConfigVars.SLOW_QUERY_MS: 60_000},
    )
    db = SQLAlchemy()
    db.init_app(app)
    telemetry = Telemetry(app)
    statement = sa.select(sa.literal(1))
    bare: list[float] = []
    timed: list[float] = []
    counted: list[float] = []
    with app.app_context(), db.engine.connect() as conn:
        _block(conn, statement, statements)  # warm the compiled cache
        for _ in range(rounds):
            bare.append(_block(conn, statement, statements))
            slow_queries.instrument(app, telemetry)
            timed.append(_block(conn, statement, statements))
            token = current_tally.set(
                Tally(started=time.perf_counter(), profile=False, max_shapes=200)
            )
            counted.append(_block(conn, statement, statements))
            current_tally.reset(token)
            slow_queries.uninstrument(app)
    return statistics.median(bare), statistics.median(timed), statistics.median(counted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.slow_query")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--statements", type=int, default=20_000)
    args = parser.parse_args(argv)
    bare, timed, counted = measure(args.rounds, args.statements)
    print(f"{'per statement (CPU, median of ' + str(args.rounds) + ')':<40} µs")
    print(f"{'no instrumentation':<40} {bare * 1e6:8.2f}")
    print(f"{'slow-query timing, none slow':<40} {timed * 1e6:8.2f}")
    print(f"{'cost of the timing':<40} {(timed - bare) * 1e6:8.2f}")
    print(f"{'timing and counting (in a request)':<40} {counted * 1e6:8.2f}")
    print(f"{'cost of timing and counting':<40} {(counted - bare) * 1e6:8.2f}")
    if timed > bare:
        ratio = (counted - bare) / (timed - bare)
        print(f"{'counting cost / timing cost':<40} {ratio:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
