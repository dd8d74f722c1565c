"""``python -m benchmarks.index_cost``: what one index costs the inserts.

Inserts the same 50,000 rows of the read side's data set (random request
ids, 200 routes) in transactions of 500, into the model's table with every
index and with all but one (by default the route index the dashboard's
route page reads), in rounds that alternate the two, and prints the median
time ratio. Each database in a database of its own (SQLite in a temporary
file), dropped after. Options: ``--index NAME``, ``--db``, ``--rounds``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
import typing as t
import uuid

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry.storage.model import trace_model

from .reading import _plain, database, generate

ROWS = 50_000
BATCH = 500


def _rows(dialect: str, columns: list[str]) -> list[dict[str, t.Any]]:
    found = []
    for chunk in generate(2 * ROWS, dt.datetime.now(dt.UTC), stop=ROWS):
        for row in chunk:
            values = dict(zip(columns, _plain(dialect, row), strict=True))
            if values["request_id"] is not None:  # as a real app's: random
                values["request_id"] = str(uuid.uuid4())
            found.append(values)
    return found


def measure(url: str, index: str, rounds: int) -> tuple[float, float]:
    """Median seconds to insert the rows (with every index, without ``index``)."""
    engine = sa.create_engine(url)
    table: sa.Table = trace_model(SQLAlchemy()).__table__
    columns = [c.name for c in table.columns if c.name != "id"]
    rows = _rows(engine.dialect.name, columns)
    insert = table.insert()
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _ in range(rounds):
            for every in (False, True):
                with engine.begin() as conn:
                    table.drop(conn, checkfirst=True)
                    conn.execute(sa.schema.CreateTable(table))
                    for each in table.indexes:
                        if every or each.name != index:
                            each.create(conn)
                started = time.perf_counter()
                for start in range(0, len(rows), BATCH):
                    with engine.begin() as conn:
                        conn.execute(insert, rows[start : start + BATCH])
                times[every].append(time.perf_counter() - started)
    finally:
        with engine.begin() as conn:
            table.drop(conn, checkfirst=True)
        engine.dispose()
    return statistics.median(times[True]), statistics.median(times[False])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="ix_telemetry_traces_route_occurred_at")
    parser.add_argument("--db", default="sqlite,postgresql,mariadb")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"# inserts of {ROWS:,} rows in transactions of {BATCH}: time with")
    print(f"# every index / time without {args.index}, median of {args.rounds}")
    with tempfile.TemporaryDirectory(prefix="flask_telemetry_index_") as workdir:
        for kind in args.db.split(","):
            with database(kind, workdir) as url:
                every, without = measure(url, args.index, args.rounds)
            print(f"{kind:<12} {every / without:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
