"""Instructions per request and per event, counted by callgrind.

Wall and CPU times on a shared machine move with whatever else runs;
instruction counts do not. ``python -m benchmarks.instructions`` runs two
child processes under ``valgrind --tool=callgrind`` (hash seed fixed) and
counts the instructions of fixed loops only:

- *request*: ``GET /hello`` through the Flask test client, bare, with
  Flask-SQLAlchemy (the reference every flask_telemetry app has), and with
  flask_telemetry in async mode with an idle writer (the request path),
  without and with one ``record()`` in the view;
- *writer*, per database: the writer thread's work for the events those
  requests queued (one ``http_request_end`` and one ``cache_miss`` with
  metadata per request; queued once, stored on each database), from the
  queued tuples to the committed rows, in batches of 500; next to the plain
  DBAPI bulk path of the same rows:
  tuples built with ``json.dumps`` and the timestamp, then ``executemany``
  (sqlite3, PyMySQL's multi-row INSERT) or ``COPY ... FROM STDIN``
  (psycopg), 500 rows per transaction.

The children start with callgrind's instrumentation off and turn it on
(``callgrind_control``) once their imports are done, which takes a third off
the run. Each loop runs inside ``sys.call_tracing()``, which callgrind is
told to count (``--toggle-collect``) and to dump after (``--dump-after``);
the cost of an empty loop is subtracted. The database servers run outside valgrind:
the counts are the client's (this process's) instructions, as the writer's
CPU per event is. Counts vary by a fraction of a percent between runs (the
servers' replies arrive in different-sized reads), not with the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import typing as t

#: Requests per counted loop, and events per writer loop (two per request).
#: The writer's events are counted in batches of ``BATCH``: a smaller
#: ``events`` (a multiple of ``BATCH``) gives the same per-event figure sooner.
REQUESTS = 200
BATCH = 500
EVENTS = 2000
TOGGLE = "_PyEval_CallTracing"
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Counts:
    """Instructions per request (request path) and per event (writer)."""

    #: variant key -> instructions per request.
    request: dict[str, float]
    #: database -> {"writer": per event, "raw": per event}.
    writer: dict[str, dict[str, float]]


# -- the child: counted loops -------------------------------------------------


class _Regions:
    """Runs loops inside ``sys.call_tracing`` and remembers their names."""

    def __init__(self) -> None:
        self.names: list[tuple[str, int]] = []

    def count(self, name: str, loops: int, call: t.Callable[[], object]) -> None:
        gc.collect()
        sys.call_tracing(call, ())
        self.names.append((name, loops))


#: The request path's variants, by the key their count is reported under.
VARIANTS = ("bare", "sqla", "async-idle-sqlite", "async-idle-sqlite-extra")


def _request_child(regions: _Regions, workdir: str, keys: t.Sequence[str]) -> None:
    from .apps import Variant, build

    url = f"sqlite:///{os.path.join(workdir, 'requests')}.db"
    variants = {
        "bare": Variant(kind="bare"),
        "sqla": Variant(kind="sqla"),
        "async-idle-sqlite": Variant(kind="async-idle", db="sqlite"),
        "async-idle-sqlite-extra": Variant(kind="async-idle", db="sqlite", extra=True),
    }
    for key in keys:
        variant = variants[key]
        built = build(variant, url)
        client = built.app.test_client()

        def loop(client: t.Any = client) -> None:
            for _ in range(REQUESTS):
                client.get("/hello")

        loop()  # warm: first-request setup, caches, the writer thread
        built.settle()
        regions.count(key, REQUESTS, loop)
        built.settle()


def _pendings(
    db: str, url: str, events: int, queued: list[t.Any] | None
) -> tuple[t.Any, list[t.Any]]:
    """The app storing into ``url``, and the requests' pending events.

    The pendings do not depend on the database: the first database's
    requests queue them (``queued`` None), the next ones reuse them.
    """
    from .apps import Variant, build

    built = build(Variant(kind="async-idle", db=db, extra=True), url)
    if queued is not None:
        return built, queued
    delivery = built.app.extensions["telemetry"].delivery
    client = built.app.test_client()
    for _ in range(events // 2 + BATCH // 2):
        client.get("/hello", headers={"User-Agent": "benchmark/1.0 (X11; Linux)"})
    queued = list(delivery._queue)
    delivery._queue.clear()
    return built, queued


def _writer_child(
    regions: _Regions, db: str, url: str, events: int, pendings: list[t.Any] | None
) -> list[t.Any]:
    from flask_telemetry.domain.delivery.batch import Outcome
    from flask_telemetry.domain.mapping import build_event

    built, pendings = _pendings(db, url, events, pendings)
    delivery = built.app.extensions["telemetry"].delivery
    warm, queued = pendings[:BATCH], pendings[BATCH : BATCH + events]
    written: list[int] = []

    def ours(batches: list[list[t.Any]]) -> None:
        for batch in batches:
            outcome = Outcome()
            delivery._store(batch, outcome)  # the writer thread's work
            written.append(outcome.written)

    ours([warm])
    regions.count(
        f"writer-{db}",
        events,
        lambda: ours([queued[i : i + BATCH] for i in range(0, events, BATCH)]),
    )
    if sum(written) != BATCH + events:
        raise RuntimeError(f"{db}: wrote {sum(written)} of {BATCH + events}")
    # The same rows for the plain DBAPI path: metadata as its dict, the time
    # as the epoch seconds the queue holds.
    values = []
    for pending in queued:
        event = build_event(pending)
        values.append((*pending[:8], event.metadata, pending[9]))
    with built.app.app_context():
        engine = built.app.extensions["sqlalchemy"].engine
    raw = engine.raw_connection()
    insert = _raw_inserter(db, raw)
    insert(values[:BATCH])
    regions.count(
        f"raw-{db}",
        events,
        lambda: [insert(values[i : i + BATCH]) for i in range(0, events, BATCH)],
    )
    raw.close()
    with built.app.app_context():
        built.telemetry.shutdown(5.0)  # type: ignore[union-attr]
    return pendings


def _raw_inserter(db: str, raw: t.Any) -> t.Callable[[list[t.Any]], None]:
    utc = dt.UTC
    stamp = dt.datetime.fromtimestamp
    dumps = json.dumps
    names = ", ".join(COLUMNS)
    if db == "postgresql":
        copy_sql = f"COPY telemetry_traces ({names}) FROM STDIN"

        def copy(rows: list[t.Any]) -> None:
            cursor = raw.cursor()
            with cursor.copy(copy_sql) as copy:
                for r in rows:
                    copy.write_row((*r[:8], dumps(r[8]), stamp(r[9], utc)))
            raw.commit()

        return copy
    marks = ", ".join(["?" if db == "sqlite" else "%s"] * len(COLUMNS))
    sql = f"INSERT INTO telemetry_traces ({names}) VALUES ({marks})"
    naive = db == "mariadb"

    def executemany(rows: list[t.Any]) -> None:
        cursor = raw.cursor()
        if naive:  # DATETIME(6): naive UTC, formatted by the driver
            params = [
                (*r[:8], dumps(r[8]), stamp(r[9], utc).replace(tzinfo=None))
                for r in rows
            ]
        else:  # SQLite: the text SQLAlchemy's DATETIME stores
            params = [
                (*r[:8], dumps(r[8]), stamp(r[9], utc).isoformat(" ")[:26])
                for r in rows
            ]
        cursor.executemany(sql, params)
        raw.commit()

    return executemany


def _instrument() -> None:
    """Turn callgrind's instrumentation on in this process.

    The child starts with it off (``--instr-atstart=no``): the imports, a
    third of the run under full instrumentation, then cost a few times less.
    Only instructions inside the counted loops are counted either way.
    """
    done = subprocess.run(
        ["callgrind_control", "--instr=on", str(os.getpid())],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control failed: {done.stdout}{done.stderr}")


def _child(args: argparse.Namespace) -> None:
    import importlib

    # What the loops import, imported before the instrumentation starts.
    modules = ["benchmarks.apps", "flask_telemetry.domain.mapping", "sqlite3"]
    if args.child == "writer":
        modules += ["flask_telemetry.domain.delivery.batch", "psycopg", "pymysql"]
    for module in modules:
        importlib.import_module(module)
    _instrument()
    regions = _Regions()
    regions.count("empty", 1, lambda: None)
    if args.child == "request":
        _request_child(regions, args.workdir, args.variants.split(","))
    else:
        urls = {"sqlite": f"sqlite:///{os.path.join(args.workdir, 'writer')}.db"}
        urls.update(postgresql=args.postgres, mariadb=args.mariadb)
        pendings = None
        for db in args.databases.split(","):
            pendings = _writer_child(regions, db, urls[db], args.events, pendings)
    with open(args.out, "w") as out:
        json.dump(regions.names, out)


# -- the parent: valgrind and the dumps -----------------------------------------


def _totals(path: str) -> int:
    with open(path) as dump:
        for line in dump:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def _run_child(
    kind: str,
    argv: list[str],
    scratch: str,
    *,
    module: str = "benchmarks.instructions",
) -> dict[str, float]:
    """Run ``python -m module --child kind`` under callgrind; return each
    counted loop's instructions per iteration, the empty loop's subtracted."""
    folder = os.path.join(scratch, kind)
    os.makedirs(folder)
    names = os.path.join(folder, "regions.json")
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--collect-atstart=no",
        f"--toggle-collect={TOGGLE}",
        f"--dump-after={TOGGLE}",
        f"--callgrind-out-file={folder}/callgrind.out.%p",
        sys.executable,
        "-m",
        module,
        "--child",
        kind,
        "--out",
        names,
        *argv,
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind {kind} failed:\n{done.stderr[-3000:]}")
    with open(names) as f:
        regions: list[tuple[str, int]] = json.load(f)
    dumps = sorted(
        glob.glob(f"{folder}/callgrind.out.*.*"),
        key=lambda p: int(p.rsplit(".", 1)[1]),
    )
    if len(dumps) != len(regions):
        raise RuntimeError(f"{len(dumps)} dumps for {len(regions)} loops")
    counts = [_totals(p) for p in dumps]
    empty = counts[0]
    return {
        name: (count - empty) / loops
        for (name, loops), count in zip(regions[1:], counts[1:], strict=True)
    }


def run(
    workdir: str,
    postgres: str,
    mariadb: str,
    *,
    databases: t.Sequence[str] = ("sqlite", "postgresql", "mariadb"),
    only: str | None = None,
    variants: t.Sequence[str] = VARIANTS,
    events: int = EVENTS,
) -> Counts:
    """Count the loops in two callgrind children run side by side.

    ``variants`` are the request path's variants to count (keys of
    :data:`VARIANTS`), ``events`` the writer's events per database (a
    multiple of :data:`BATCH`).
    """
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed")
    if events <= 0 or events % BATCH:
        raise ValueError(f"events must be a positive multiple of {BATCH}")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants: {', '.join(sorted(unknown))}")
    scratch = tempfile.mkdtemp(prefix="callgrind_", dir=workdir)
    common = ["--workdir", workdir, "--postgres", postgres, "--mariadb", mariadb]
    from concurrent.futures import ThreadPoolExecutor

    request_args = [*common, "--variants", ",".join(variants)]
    writer_args = [
        *common,
        "--databases",
        ",".join(databases),
        "--events",
        str(events),
    ]
    with ThreadPoolExecutor(2) as pool:
        request = writer = None
        if only in (None, "request"):
            request = pool.submit(_run_child, "request", request_args, scratch)
        if only in (None, "writer"):
            writer = pool.submit(_run_child, "writer", writer_args, scratch)
        per_request = request.result() if request is not None else {}
        per_event = writer.result() if writer is not None else {}
    shutil.rmtree(scratch, ignore_errors=True)
    return Counts(
        request=per_request,
        writer={
            db: {"writer": per_event[f"writer-{db}"], "raw": per_event[f"raw-{db}"]}
            for db in databases
            if f"writer-{db}" in per_event
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions", description=__doc__
    )
    parser.add_argument("--child", choices=["request", "writer"])
    parser.add_argument("--out")
    parser.add_argument("--workdir")
    parser.add_argument("--postgres")
    parser.add_argument("--mariadb")
    parser.add_argument("--databases", default="sqlite,postgresql,mariadb")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--events", type=int, default=EVENTS, help="writer events per database"
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the counts to PATH as JSON"
    )
    parser.add_argument(
        "--only", choices=["request", "writer"], help="count one side only"
    )
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    from .common import databases

    with databases() as urls:
        counts = run(
            urls.workdir,
            urls.postgres,
            urls.mariadb,
            databases=args.databases.split(","),
            only=args.only,
            variants=args.variants.split(","),
            events=args.events,
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(dataclasses.asdict(counts), out, indent=2)
    bare = counts.request.get("bare", 1.0)
    for key, value in counts.request.items():
        print(
            f"{key:28} {value:12,.0f} instructions/request  "
            f"bare/this {bare / value:.3f}"
        )
    for db, pair in counts.writer.items():
        print(
            f"writer {db:21} {pair['writer']:12,.0f} instructions/event  "
            f"raw {pair['raw']:10,.0f}  writer/raw {pair['writer'] / pair['raw']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
