"""What the database time (issue 24) costs, in instructions counted by callgrind.

``python -m benchmarks.db_instructions`` runs one child process under
``valgrind --tool=callgrind`` with :mod:`benchmarks.instructions`'s machinery
(hash seed fixed, instrumentation off until the imports are done, each loop
counted inside ``sys.call_tracing()``, the empty loop's cost subtracted) and
counts, SQLite only, in one run:

1. *Per statement*: ``SELECT 1`` (``sa.select(sa.literal(1))``) executed
   :data:`STATEMENTS` times on one connection of the app's Flask-SQLAlchemy
   engine (an in-memory database, as ``benchmarks.slow_query``), inside a
   request context:

   - ``statement-plain``: the integration not instrumented (plain SQLAlchemy);
   - ``statement-timing``: ``instrument(app, telemetry, slow_ms=60_000,
     n_plus_one_threshold=0)`` and no tally open, so that each statement
     is timed (``before_cursor_execute`` / ``after_cursor_execute``), found
     not slow and not counted: the slow-query timing as it was before the
     statements were counted, plus the one ``ContextVar.get`` that finds no
     tally (the integration has no timing-only mode left; this is the
     faithful one);
   - ``statement-counting``: the same with a request's tally open (what
     ``before_request`` opens: no profile, 200 shapes), so that each
     statement is also counted and grouped under its shape.

   Per statement over plain: the timing's cost, the counting's, and
   (counting - plain) / (timing - plain) against the target of 1.5.
2. *A request of 100 statements* through the Flask test client: a view runs
   100 small ORM-session queries (20 shapes, 5 runs each: no N+1 is
   recorded) on a SQLite file, :data:`REQUESTS` times, with Flask-SQLAlchemy
   alone (``queries-sqla``), with flask_telemetry (async, writer idle) and
   no integration (``queries-telemetry``), and with ``instrument()`` in
   force (``queries-counted``, the defaults: every statement timed, counted
   and grouped by shape, N+1 threshold 10), and in force without the
   ``before_request`` that opens the request's tally (``queries-timing``:
   statements timed, none counted, as before issue 24). The counting and
   shape grouping cost (counted - timing) / sqla, against the target of 3%;
   the integration as a whole, (counted - telemetry) / sqla, is shown too.
3. *The request path* (``GET /hello``, no statement, flask_telemetry
   async with the writer idle), :data:`PATH_REQUESTS` times: the
   integration never installed (``path-none``), installed and then
   ``uninstrument()``-ed (``path-off``), and in force (``path-on``: its
   ``before_request`` and teardown on a request without statements).

``--json PATH`` writes the counts; ``--publish`` puts the table into the
README's Performance section, after the slow-query table (what ``make bench``
writes there too).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import typing as t

from . import instructions, report

#: Executions of the statement per counted loop.
STATEMENTS = 2000
#: Requests of 100 statements per counted loop.
REQUESTS = 20
#: Requests on the request path per counted loop.
PATH_REQUESTS = 200
#: Issue 24's targets: per statement, the counting's cost over the timing's
#: (at most); per request of 100 statements, the integration's cost over
#: bare Flask-SQLAlchemy's request (at most); the request path with the
#: integration off over never installed (at most, a counting's noise).
TARGET_PER_STATEMENT = 1.5
TARGET_PER_REQUEST = 0.03
TARGET_PATH_OFF = 1.002
SHAPES = 20
QUERIES = 100
KEYS = (
    "statement-plain",
    "statement-timing",
    "statement-counting",
    "queries-sqla",
    "queries-telemetry",
    "queries-timing",
    "queries-counted",
    "path-none",
    "path-off",
    "path-on",
)


# -- the child: counted loops -------------------------------------------------


def _statements(regions: instructions._Regions, statements: int) -> None:
    import time

    import sqlalchemy as sa
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_telemetry import ConfigVars, Telemetry
    from flask_telemetry.integrations import sqlalchemy as integration
    from flask_telemetry.integrations._db_time import Tally, current_tally

    app = Flask("db_instructions")
    app.config.update(
        SQLALCHEMY_DATABASE_URI="sqlite://",
        **{ConfigVars.DELIVERY: "sync", ConfigVars.SLOW_QUERY_MS: 60_000},
    )
    db = SQLAlchemy()
    db.init_app(app)
    telemetry = Telemetry(app)
    statement = sa.select(sa.literal(1))
    with app.test_request_context(), db.engine.connect() as conn:
        execute = conn.execute

        def loop() -> None:
            for _ in range(statements):
                execute(statement)

        loop()  # warm: the compiled cache
        regions.count("statement-plain", statements, loop)
        integration.instrument(app, telemetry, slow_ms=60_000, n_plus_one_threshold=0)
        loop()
        regions.count("statement-timing", statements, loop)

        def tally() -> Tally:
            return Tally(started=time.perf_counter(), profile=False, max_shapes=200)

        token = current_tally.set(tally())
        loop()
        current_tally.reset(token)
        token = current_tally.set(tally())  # a new request's: the shape is new
        regions.count("statement-counting", statements, loop)
        count = current_tally.get()
        current_tally.reset(token)
        if count is None or count.figures()[0] != statements:
            raise RuntimeError("the request's tally did not count every statement")
        integration.uninstrument(app)
    with app.app_context():
        telemetry.shutdown(5.0)


def _queries(app: t.Any) -> None:
    """Add ``GET /queries``: 100 small queries of 20 shapes (5 runs each)."""
    import sqlalchemy as sa

    db = app.extensions["sqlalchemy"]
    item = sa.Table(
        "bench_item",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40)),
    )
    shapes = [
        sa.select(item.c.name, sa.literal_column(str(k))).where(
            item.c.id == sa.bindparam("id")
        )
        for k in range(SHAPES)
    ]
    with app.app_context():
        item.create(db.engine, checkfirst=True)
        with db.engine.begin() as conn:
            if not conn.execute(sa.select(sa.func.count()).select_from(item)).scalar():
                conn.execute(
                    item.insert(), [{"id": i, "name": f"item {i}"} for i in range(50)]
                )

    def queries() -> dict[str, int]:
        session = db.session
        found = 0
        for i in range(QUERIES):
            row = session.execute(shapes[i % SHAPES], {"id": i % 50}).first()
            found += row is not None
        return {"found": found}

    app.add_url_rule("/queries", "queries", queries)


def _requests(
    regions: instructions._Regions, workdir: str, requests: int, path_requests: int
) -> None:
    from flask_telemetry.integrations import sqlalchemy as integration

    from .apps import Built, Variant, build

    url = f"sqlite:///{os.path.join(workdir, 'db_instructions')}.db"

    def sqla() -> Built:
        return build(Variant(kind="sqla"), url)

    def telemetry(
        *, on: bool = False, off: bool = False, timing: bool = False
    ) -> Built:
        built = build(Variant(kind="async-idle", db="sqlite"), url)
        if on or off or timing:
            assert built.telemetry is not None
            integration.instrument(built.app, built.telemetry)
        if off:
            integration.uninstrument(built.app)
        if timing:
            # No request tally is opened: statements are timed, not counted.
            built.app.before_request_funcs[None].remove(integration._begin_request)
        return built

    runs: list[tuple[str, t.Callable[[], Built], str, int]] = [
        ("queries-sqla", sqla, "/queries", requests),
        ("queries-telemetry", telemetry, "/queries", requests),
        ("queries-timing", lambda: telemetry(timing=True), "/queries", requests),
        ("queries-counted", lambda: telemetry(on=True), "/queries", requests),
        ("path-none", telemetry, "/hello", path_requests),
        ("path-off", lambda: telemetry(off=True), "/hello", path_requests),
        ("path-on", lambda: telemetry(on=True), "/hello", path_requests),
    ]
    for key, make, path, loops in runs:
        built = make()
        _queries(built.app)
        client = built.app.test_client()

        def loop(client: t.Any = client, path: str = path, loops: int = loops) -> None:
            for _ in range(loops):
                response = client.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status}")

        loop()  # warm: first-request setup, caches, the writer thread
        built.settle()
        regions.count(key, loops, loop)
        built.settle()
        if built.telemetry is not None:
            with built.app.app_context():
                built.telemetry.shutdown(5.0)


def _child(args: argparse.Namespace) -> None:
    import importlib

    # What the loops import, imported before the instrumentation starts.
    for module in (
        "benchmarks.apps",
        "flask_telemetry.domain.mapping",
        "flask_telemetry.integrations.sqlalchemy",
        "sqlite3",
    ):
        importlib.import_module(module)
    instructions._instrument()
    regions = instructions._Regions()
    regions.count("empty", 1, lambda: None)
    _statements(regions, args.statements)
    _requests(regions, args.workdir, args.requests, args.path_requests)
    with open(args.out, "w") as out:
        json.dump(regions.names, out)


# -- the parent: the run, the figures, the table --------------------------------


def run(
    workdir: str,
    *,
    statements: int = STATEMENTS,
    requests: int = REQUESTS,
    path_requests: int = PATH_REQUESTS,
) -> dict[str, float]:
    """Instructions per iteration of each loop of :data:`KEYS`."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed")
    scratch = tempfile.mkdtemp(prefix="callgrind_db_", dir=workdir)
    try:
        return instructions._run_child(
            "db",
            [
                "--workdir",
                workdir,
                "--statements",
                str(statements),
                "--requests",
                str(requests),
                "--path-requests",
                str(path_requests),
            ],
            scratch,
            module="benchmarks.db_instructions",
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Figures:
    """The ratios the targets are about, from :func:`run`'s counts."""

    #: Instructions per statement over plain SQLAlchemy: timing, counting.
    timing: float
    counting: float
    #: (counting - plain) / (timing - plain).
    per_statement: float
    #: (counted - timing) / sqla, for a request of 100 statements: the
    #: counting and shape grouping (and the request's tally, opened and read).
    per_request: float
    #: (counted - telemetry) / sqla: the integration, timing included.
    per_request_integration: float
    #: (counted - sqla) / sqla: flask_telemetry and its integration.
    per_request_all: float
    #: path-off / path-none and path-on / path-none.
    path_off: float
    path_on: float

    @classmethod
    def of(cls, counts: t.Mapping[str, float]) -> Figures:
        plain = counts["statement-plain"]
        timing = counts["statement-timing"] - plain
        counting = counts["statement-counting"] - plain
        sqla = counts["queries-sqla"]
        return cls(
            timing=timing,
            counting=counting,
            per_statement=counting / timing,
            per_request=(counts["queries-counted"] - counts["queries-timing"]) / sqla,
            per_request_integration=(
                counts["queries-counted"] - counts["queries-telemetry"]
            )
            / sqla,
            per_request_all=(counts["queries-counted"] - sqla) / sqla,
            path_off=counts["path-off"] / counts["path-none"],
            path_on=counts["path-on"] / counts["path-none"],
        )


def table(counts: t.Mapping[str, float]) -> report.Table:
    """The instruction counts and issue 24's targets as one table."""
    f = Figures.of(counts)

    def status(value: float, goal: float) -> str:
        return "met" if value <= goal else "missed"

    def n(key: str) -> str:
        return f"{counts[key]:,.0f}"

    rows = [
        ["per statement: plain SQLAlchemy", n("statement-plain"), "", ""],
        [
            "per statement: with slow-query timing (none slow, no tally)",
            f"{n('statement-timing')} (+{f.timing:,.0f})",
            "",
            "",
        ],
        [
            "per statement: with counting and shape grouping (tally open)",
            f"{n('statement-counting')} (+{f.counting:,.0f})",
            "",
            "",
        ],
        [
            "per statement: cost of timing and counting / of the timing",
            f"{f.per_statement:.2f}x",
            f"<= {TARGET_PER_STATEMENT:.1f}x",
            status(f.per_statement, TARGET_PER_STATEMENT),
        ],
        ["request of 100 statements: bare Flask-SQLAlchemy", n("queries-sqla"), "", ""],
        [
            "request: with flask_telemetry, no integration",
            n("queries-telemetry"),
            "",
            "",
        ],
        [
            "request: with slow-query timing only (no request tally)",
            n("queries-timing"),
            "",
            "",
        ],
        [
            "request: with counting and shape grouping (the integration)",
            n("queries-counted"),
            "",
            "",
        ],
        [
            "request: counting and grouping / bare Flask-SQLAlchemy's",
            f"{f.per_request:.2%}",
            f"<= {TARGET_PER_REQUEST:.0%}",
            status(f.per_request, TARGET_PER_REQUEST),
        ],
        [
            "request: the integration, timing included / bare's",
            f"{f.per_request_integration:.2%}",
            "",
            "",
        ],
        [
            "request: flask_telemetry and the integration / bare's",
            f"{f.per_request_all:.2%}",
            "",
            "",
        ],
        ["request path: integration never installed", n("path-none"), "", ""],
        [
            "request path: instrumented, then uninstrument()-ed / never",
            f"{n('path-off')} ({f.path_off:.4f}x)",
            f"<= {TARGET_PATH_OFF:.3f}x",
            status(f.path_off, TARGET_PATH_OFF),
        ],
        [
            "request path: in force, no statement / never",
            f"{n('path-on')} ({f.path_on:.4f}x)",
            "",
            "",
        ],
    ]
    return report.Table(
        title="Database time (issue 24): instructions (callgrind)",
        headers=["what", "instructions", "target", "status"],
        rows=rows,
        note=(
            "Counted by ``python -m benchmarks.db_instructions`` under valgrind's "
            "callgrind, SQLite, in one run. Per statement: ``SELECT 1`` "
            f"{STATEMENTS:,} times on one connection inside a request context; "
            "timing: ``instrument(slow_ms=60_000, n_plus_one_threshold=0)`` with "
            "no tally open (the slow-query timing as before statements were "
            "counted, plus one ``ContextVar.get``); counting: a request's tally "
            f"open. Request: ``GET /queries`` {REQUESTS} times through the test "
            f"client, {QUERIES} session queries of {SHAPES} shapes (no N+1 "
            "recorded), flask_telemetry async with the writer idle; timing only: "
            "``instrument()`` without its ``before_request``, so that no tally "
            "is opened. Most of the timing's cost is SQLAlchemy's: any "
            "``before_cursor_execute``/``after_cursor_execute`` listener makes "
            "each execution dispatch the connection events. "
            f"Request path: ``GET /hello`` {PATH_REQUESTS} times."
        ),
    )


def publish(text: str, readme: str = "README.rst") -> None:
    """Put the table ``text`` in the README's Performance section, in place
    of an earlier one, else after the slow-query table, else before the
    section's end marker."""
    with open(readme, encoding="utf-8") as source:
        content = source.read()
    start = content.index(report.START)
    end = content.index(report.END, start)
    earlier = content.find("**Database time (issue 24)", start, end)
    if earlier >= 0:
        after = content.find("\n\n**", earlier, end)
        stop = end if after < 0 else after + 2
        content = content[:earlier] + text + "\n\n" + content[stop:]
    else:
        slow = content.find("**Slow-query integration**", start, end)
        after = -1 if slow < 0 else content.find("\n\n**", slow, end)
        at = end if after < 0 else after + 2
        content = content[:at] + text + "\n\n" + content[at:]
    with open(readme, "w", encoding="utf-8") as target:
        target.write(content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.db_instructions", description=__doc__
    )
    parser.add_argument("--child", choices=["db"])
    parser.add_argument("--out")
    parser.add_argument("--workdir")
    parser.add_argument("--statements", type=int, default=STATEMENTS)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--path-requests", type=int, default=PATH_REQUESTS)
    parser.add_argument(
        "--json", metavar="PATH", help="also write the counts to PATH as JSON"
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="write the table into README.rst's Performance section",
    )
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="flask_telemetry_db_") as workdir:
        counts = run(
            workdir,
            statements=args.statements,
            requests=args.requests,
            path_requests=args.path_requests,
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(counts, out, indent=2)
    text = table(counts).rst()
    print(text)
    if args.publish:
        publish(text)
        print("wrote the table into README.rst", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
