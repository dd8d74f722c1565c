"""The performance budget CI holds the hot path to, in callgrind instructions.

``python -m benchmarks.budget`` counts, under valgrind's callgrind (see
:mod:`benchmarks.instructions`), the request path and the writer, and exits
with status 1 when either is over its budget:

- *request path*: bare Flask's instructions per ``GET /hello`` over
  flask_telemetry's in async mode with the writer idle (SQLite), the
  ``bare / this`` of the README's instruction table; at least
  :data:`REQUEST_FLOOR`;
- *writer*, on SQLite, PostgreSQL and MariaDB each: the writer's instructions
  per event over the plain DBAPI bulk path's for the same rows; at most
  :data:`WRITER_CEILING`.

The counts are the instruction table's, in smaller loops (two request
variants; 1,000 writer events per database, the same batches of 500), so
that the check takes a few minutes; they move by a fraction of a percent
between runs, not with the machine's load. The database servers are the test
suite's, ``TELEMETRY_TEST_POSTGRES_URL`` and ``TELEMETRY_TEST_MARIADB_URL``
when set (else ``BENCH_POSTGRES_URL`` and ``BENCH_MARIADB_URL``, else
127.0.0.1); the run creates databases of its own on them and drops them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import typing as t

#: bare Flask / flask_telemetry's request path (writer idle), at least.
REQUEST_FLOOR = 0.895
#: flask_telemetry's writer / plain DBAPI, per event, at most, on each database.
WRITER_CEILING = 1.35
#: The databases the writer is counted on, and how they are named.
DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}
#: The request variants counted: the reference and the request path.
BARE, PATH = "bare", "async-idle-sqlite"
#: Writer events counted per database (a multiple of the batch, 500).
EVENTS = 1000


class Counts(t.TypedDict):
    """What ``python -m benchmarks.instructions --json`` writes."""

    #: variant -> instructions per request.
    request: dict[str, float]
    #: database -> {"writer": per event, "raw": per event}.
    writer: dict[str, dict[str, float]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Check:
    """One figure next to its limit."""

    what: str
    #: The ratio, or None when its counts are missing (which fails).
    ratio: float | None
    limit: float
    #: True: the ratio must be at least the limit; False: at most.
    floor: bool
    #: The counts the ratio is made of.
    counts: str

    @property
    def ok(self) -> bool:
        """Whether the figure is within its budget."""
        if self.ratio is None:
            return False
        return self.ratio >= self.limit if self.floor else self.ratio <= self.limit

    @property
    def rule(self) -> str:
        """``>= 0.895`` or ``<= 1.35``."""
        return f"{'>=' if self.floor else '<='} {self.limit:g}"

    def shown(self) -> str:
        """The ratio to three decimals, or more when three would hide a failure.

        835,032 / 933,000 is 0.894997: ``0.895`` would read as within a floor
        of 0.895, so it is shown as ``0.894997``.
        """
        if self.ratio is None:
            return "missing"
        for digits in range(3, 10):
            text = f"{self.ratio:.{digits}f}"
            shown = float(text)
            if self.ok or (shown < self.limit if self.floor else shown > self.limit):
                return text
        return repr(self.ratio)

    def line(self) -> str:
        """One row of the printed table."""
        ratio = self.shown()
        status = "ok" if self.ok else "OVER BUDGET"
        return f"{self.what:44} {ratio:>8}  {self.rule:8}  {status:11}  {self.counts}"

    def failure(self) -> str:
        """Why this check fails, naming the figure, its ratio and its limit."""
        if self.ratio is None:
            return f"{self.what}: no count ({self.counts})"
        if self.floor:
            return (
                f"{self.what} is {self.shown()}, below its floor of "
                f"{self.limit:g} ({self.counts})"
            )
        return (
            f"{self.what} is {self.shown()}, above its ceiling of "
            f"{self.limit:g} ({self.counts})"
        )


def checks(
    counts: Counts,
    *,
    request_floor: float = REQUEST_FLOOR,
    writer_ceiling: float = WRITER_CEILING,
) -> list[Check]:
    """The request path's check, then the writer's on every database.

    A count that is missing (a variant or a database the run did not give)
    makes a failing check, never a skipped one.
    """
    request = counts.get("request", {})
    bare, path = request.get(BARE), request.get(PATH)
    found: list[Check] = [
        Check(
            what="request path (SQLite, writer idle) bare/this",
            ratio=bare / path if bare and path else None,
            limit=request_floor,
            floor=True,
            counts=_pair(bare, path, "instructions/request"),
        )
    ]
    writer = counts.get("writer", {})
    for db, name in DATABASES.items():
        pair = writer.get(db, {})
        ours, raw = pair.get("writer"), pair.get("raw")
        found.append(
            Check(
                what=f"writer on {name} / plain DBAPI",
                ratio=ours / raw if ours and raw else None,
                limit=writer_ceiling,
                floor=False,
                counts=_pair(ours, raw, "instructions/event"),
            )
        )
    return found


def _pair(top: float | None, bottom: float | None, unit: str) -> str:
    def figure(value: float | None) -> str:
        return "?" if value is None else f"{value:,.0f}"

    return f"{figure(top)} / {figure(bottom)} {unit}"


def verdict(found: t.Sequence[Check]) -> tuple[str, list[str]]:
    """The table to print, and one message per broken limit (none: within)."""
    lines = [f"{'budget':44} {'ratio':>8}  {'limit':8}  {'status':11}  counts"]
    lines.extend(check.line() for check in found)
    return "\n".join(lines), [check.failure() for check in found if not check.ok]


def count(events: int = EVENTS) -> Counts:
    """Run ``python -m benchmarks.instructions`` on the budget's loops."""
    env = dict(os.environ)
    for test, bench in (
        ("TELEMETRY_TEST_POSTGRES_URL", "BENCH_POSTGRES_URL"),
        ("TELEMETRY_TEST_MARIADB_URL", "BENCH_MARIADB_URL"),
    ):
        if env.get(test):
            env[bench] = env[test]
    with tempfile.TemporaryDirectory(prefix="flask_telemetry_budget_") as folder:
        out = os.path.join(folder, "counts.json")
        command = [
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--variants",
            f"{BARE},{PATH}",
            "--databases",
            ",".join(DATABASES),
            "--events",
            str(events),
            "--json",
            out,
        ]
        subprocess.run(command, env=env, check=True)
        with open(out) as f:
            counts: Counts = json.load(f)
    return counts


def main(
    argv: list[str] | None = None, *, counter: t.Callable[[int], Counts] = count
) -> int:
    """Count, print the budget table, and return 1 when a limit is broken."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.budget", description=__doc__
    )
    parser.add_argument(
        "--events",
        type=int,
        default=EVENTS,
        help=f"writer events per database (default {EVENTS})",
    )
    args = parser.parse_args(argv)
    try:
        counts = counter(args.events)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"performance budget: the counts failed: {error}", file=sys.stderr)
        return 2
    table, broken = verdict(checks(counts))
    print(table)
    if broken:
        print("performance budget broken:", file=sys.stderr)
        for message in broken:
            print(f"  {message}", file=sys.stderr)
        return 1
    print("performance budget: within every limit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
