"""Shared pieces: run sizes, the benchmark databases, statistics, CPU and RSS."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import statistics
import tempfile
import time
import typing as t

import sqlalchemy as sa

#: Servers the benchmark creates its own databases on (override with env vars).
POSTGRES_SERVER = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_SERVER = os.environ.get(
    "BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)
#: The databases created for the run and dropped after it (named after the
#: process, so that runs side by side on one server never drop each other's).
POSTGRES_DB = f"bench_pg_{os.getpid()}"
MARIADB_DB = f"bench_my_{os.getpid()}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scale:
    """How much work each part does; ``quick`` is for a smoke run."""

    name: str
    rounds: int
    requests: int
    http_rounds: int
    http_requests: int
    #: A block stops early after this many seconds (the slowest variants).
    block_seconds: float
    ingest_rounds: int
    ingest_events: int
    sync_rounds: int
    sync_events: int
    memory_events: int


FULL = Scale(
    name="full",
    rounds=9,
    requests=1000,
    http_rounds=4,
    http_requests=800,
    block_seconds=3.0,
    ingest_rounds=5,
    ingest_events=10_000,
    sync_rounds=7,
    sync_events=1000,
    memory_events=100_000,
)
QUICK = Scale(
    name="quick",
    rounds=3,
    requests=300,
    http_rounds=2,
    http_requests=300,
    block_seconds=1.0,
    ingest_rounds=2,
    ingest_events=3000,
    sync_rounds=3,
    sync_events=200,
    memory_events=100_000,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Urls:
    """Database URLs of one run: SQLite files in a scratch folder, two servers."""

    workdir: str
    postgres: str
    mariadb: str

    def sqlite(self, name: str) -> str:
        """A SQLite file of its own for ``name`` (file-backed, not in memory)."""
        return f"sqlite:///{os.path.join(self.workdir, name)}.db"

    def for_db(self, db: str, name: str) -> str:
        """The URL of ``db`` ("sqlite", "postgresql" or "mariadb")."""
        if db == "sqlite":
            return self.sqlite(name)
        return self.postgres if db == "postgresql" else self.mariadb


def _server_url(server: str, database: str) -> str:
    return sa.make_url(server).set(database=database).render_as_string(False)


def _admin(server: str, statements: list[str]) -> None:
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


@contextlib.contextmanager
def databases() -> t.Iterator[Urls]:
    """Create the run's own databases (dropped at the end) and a scratch folder.

    Nothing else on the servers is touched: other users keep running.
    """
    pg_drop = f'DROP DATABASE IF EXISTS "{POSTGRES_DB}" WITH (FORCE)'
    my_drop = f"DROP DATABASE IF EXISTS `{MARIADB_DB}`"
    _admin(POSTGRES_SERVER, [pg_drop, f'CREATE DATABASE "{POSTGRES_DB}"'])
    _admin(MARIADB_SERVER, [my_drop, f"CREATE DATABASE `{MARIADB_DB}`"])
    with tempfile.TemporaryDirectory(prefix="flask_telemetry_bench_") as workdir:
        try:
            yield Urls(
                workdir=workdir,
                postgres=_server_url(POSTGRES_SERVER, POSTGRES_DB),
                mariadb=_server_url(MARIADB_SERVER, MARIADB_DB),
            )
        finally:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                _admin(POSTGRES_SERVER, [pg_drop])
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                _admin(MARIADB_SERVER, [my_drop])


def closed_port_url() -> str:
    """A PostgreSQL URL on a 127.0.0.1 port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/down"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class Summary:
    """Median and interquartile range of per-round values."""

    median: float
    low: float
    high: float
    n: int

    def ratio(self) -> str:
        """``0.93 (0.91-0.95)``: median (25th-75th percentile)."""
        return f"{self.median:.2f} ({self.low:.2f}-{self.high:.2f})"


def summarize(values: t.Sequence[float]) -> Summary:
    """Median and quartiles (the whole range with fewer than four values)."""
    data = sorted(values)
    if len(data) < 4:
        return Summary(statistics.median(data), data[0], data[-1], len(data))
    q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive")
    return Summary(statistics.median(data), q1, q3, len(data))


def thread_cpu(ident: int | None) -> float:
    """CPU seconds used so far by the thread ``ident`` (0.0 when unknown)."""
    if ident is None:
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError):
        return 0.0


def rss_mb() -> float:
    """Resident set size of this process, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def machine() -> str:
    """``2 cores, Intel(R) Xeon(R) ...``: what the figures were measured on."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Block:
    """One timed block: wall seconds for ``n`` requests and their latencies."""

    seconds: float
    n: int
    p50: float
    p99: float
    errors: int = 0
    #: CPU seconds of the thread that served the block (0.0: not measured).
    main_cpu: float = 0.0
    #: CPU seconds of telemetry's writer thread during the block.
    writer_cpu: float = 0.0

    @property
    def rate(self) -> float:
        """Requests (or events) per second."""
        return self.n / self.seconds


def percentile(sorted_values: t.Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Relative:
    """A block next to the mean of the bare blocks run just before and after it."""

    throughput: float
    p50: float
    p99: float
    #: CPU per request of the serving thread, and of the writer thread, over
    #: the bare blocks' serving thread per request (None: not measured).
    main_cpu: float | None = None
    writer_cpu: float | None = None


def interleaved(
    keys: t.Sequence[str],
    rounds: int,
    run: t.Callable[[str | None], Block],
    *,
    seed: int = 5,
) -> tuple[dict[str, list[Relative]], list[Block]]:
    """Run ``bare, k1, bare, k2, ..., bare`` per round, keys shuffled per round.

    ``run(None)`` runs the bare app. Each key's block is compared with the
    bare blocks on either side of it, so slow drift of a shared machine
    cancels out. Returns the per-round ratios of each key and the bare blocks.
    """
    import random

    ratios: dict[str, list[Relative]] = {key: [] for key in keys}
    bares: list[Block] = []
    for number in range(rounds):
        order = list(keys)
        random.Random(seed * 1000 + number).shuffle(order)
        before = run(None)
        bares.append(before)
        for key in order:
            block = run(key)
            after = run(None)
            bares.append(after)
            rate = (before.rate + after.rate) / 2
            p50 = (before.p50 + after.p50) / 2
            p99 = (before.p99 + after.p99) / 2
            cpu = (before.main_cpu / before.n + after.main_cpu / after.n) / 2
            ratios[key].append(
                Relative(
                    throughput=block.rate / rate,
                    p50=block.p50 / p50,
                    p99=block.p99 / p99,
                    main_cpu=block.main_cpu / block.n / cpu if cpu else None,
                    writer_cpu=block.writer_cpu / block.n / cpu if cpu else None,
                )
            )
            before = after
    return ratios, bares
