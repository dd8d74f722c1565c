"""Retention: delete expired rows in short batches, drop expired partitions.

Each batch is its own transaction deleting at most ``batch_size`` rows,
chosen in the database by the ``occurred_at`` index (no id is ever loaded
into memory), so the writer inserting at the same time waits at most one
short batch (on SQLite, whose one write lock covers the whole database,
batches are spaced so that a waiting writer always gets in). On a
PostgreSQL table partitioned by ``occurred_at`` (see
docs/examples/partitioning.sql), partitions that hold only expired rows
are dropped whole first, each in a transaction of its own with a short lock
timeout, and the rows left are deleted batch by batch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
import typing as t

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from . import _dialects
from .records import PruneResult

#: How long dropping a partition may wait for its lock (PostgreSQL): the
#: writer's inserts queue behind the DROP meanwhile, so well below the
#: writer's own lock timeout.
DROP_LOCK_TIMEOUT_MS = 100
#: Attempts to drop one partition before leaving it to the row deletes.
DROP_ATTEMPTS = 5
#: Attempts of one DELETE batch that could not get its locks in time.
BATCH_ATTEMPTS = 5
#: How long one DELETE batch may wait for a lock (PostgreSQL).
BATCH_LOCK_TIMEOUT_MS = 2000

#: Pause between two batches (SQLite): one lock covers the whole database,
#: and a writer waiting for it polls, sleeping up to 100 ms between tries
#: (SQLite's busy handler), so each gap must be longer than that for the
#: writer to get in.
SQLITE_PAUSE = 0.11

#: SQLite page cache of a batch's connection, in KiB (as PRAGMA cache_size
#: takes it, negative).
SQLITE_CACHE_KIB = -65536

_BOUND = re.compile(r"FOR VALUES FROM \((?P<low>.+)\) TO \((?P<high>.+)\)\Z")


def prune(
    engine: sa.Engine,
    table: sa.Table,
    *,
    cutoff: dt.datetime,
    batch_size: int = 5000,
    max_seconds: float | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Delete the rows with ``occurred_at < cutoff`` and nothing else.

    ``cutoff`` is an aware datetime (a naive one is taken as UTC). Rows go
    ``batch_size`` at a time, each batch in a transaction of its own; with
    ``max_seconds`` no new batch starts once that much time has passed, and
    the result says how many expired rows are left. ``dry_run`` counts what
    would be deleted and deletes nothing.
    """
    _check(batch_size, max_seconds)
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=dt.UTC)
    cutoff = cutoff.astimezone(dt.UTC)
    started = time.monotonic()
    bound = _dialects.bind_time(engine.dialect, cutoff)
    partitions, partman = _expired(engine, table, cutoff)
    if dry_run:
        with engine.connect() as conn:
            count = _count_expired(conn, table, bound)
        return PruneResult(
            deleted=count,
            batches=0,
            seconds=time.monotonic() - started,
            cutoff=cutoff,
            partitions_dropped=len(partitions),
            partition_names=tuple(partitions),
            dry_run=True,
        )
    taken = _drop_expired(engine, table, partitions, partman, cutoff)
    deleted, batches, remaining = _delete_expired(
        engine, table, bound, batch_size, started, max_seconds
    )
    return PruneResult(
        deleted=sum(taken.values()) + deleted,
        batches=batches,
        seconds=time.monotonic() - started,
        cutoff=cutoff,
        partitions_dropped=len(taken),
        partition_names=tuple(taken),
        remaining=remaining,
    )


def _check(batch_size: object, max_seconds: float | None) -> None:
    """A ``ValueError`` naming the first argument of :func:`prune` out of its
    domain."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be an integer >= 1, not {batch_size!r}.")
    if max_seconds is not None and max_seconds < 0:
        raise ValueError(f"max_seconds must be >= 0 or None, not {max_seconds!r}.")


def _expired(
    engine: sa.Engine, table: sa.Table, cutoff: dt.datetime
) -> tuple[list[str], dict[str, t.Any] | None]:
    """The partitions that hold only expired rows (PostgreSQL), and
    pg_partman's configuration of the table when there are any and it
    manages them."""
    if engine.dialect.name != "postgresql":
        return [], None
    with engine.connect() as conn:
        partitions = _expired_partitions(conn, table, cutoff)
        if not partitions:
            return [], None
        partman = partman_config(conn, table)
        conn.rollback()
    return partitions, partman


def _drop_expired(
    engine: sa.Engine,
    table: sa.Table,
    partitions: list[str],
    partman: dict[str, t.Any] | None,
    cutoff: dt.datetime,
) -> dict[str, int]:
    """Drop the expired partitions, through pg_partman where it manages
    them; the row count of each partition dropped (those whose lock was not
    granted stay, for the row deletes)."""
    if partman is not None:
        return _drop_with_partman(engine, table, partman, cutoff)
    dropped: dict[str, int] = {}
    for name in partitions:
        rows = _drop_partition(engine, name)
        if rows is not None:
            dropped[name] = rows
    return dropped


def _delete_expired(
    engine: sa.Engine,
    table: sa.Table,
    bound: dt.datetime,
    batch_size: int,
    started: float,
    max_seconds: float | None,
) -> tuple[int, int, int]:
    """Delete the expired rows batch by batch until a batch is not full, or
    until ``max_seconds`` since ``started``; returns (rows deleted, batches,
    expired rows left when the time ran out)."""
    dialect = engine.dialect
    delete = _batch_delete(dialect, table, batch_size)
    deleted = batches = 0
    while True:
        count = _run_batch(engine, delete, bound)
        batches += 1
        deleted += count
        if count < batch_size:
            return deleted, batches, 0
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            with engine.connect() as conn:
                return deleted, batches, _count_expired(conn, table, bound)
        if dialect.name == "sqlite":
            time.sleep(SQLITE_PAUSE)


def _run_batch(engine: sa.Engine, delete: sa.Executable, bound: dt.datetime) -> int:
    """One batch in its own transaction; tried again when a lock was not
    granted in time (the writer holds SQLite's one lock, a long query holds
    a row). Returns the rows deleted."""
    for attempt in range(BATCH_ATTEMPTS):
        try:
            with _transaction(engine) as conn:
                return int(conn.execute(delete, {"cutoff": bound}).rowcount)
        except sa_exc.OperationalError:
            if attempt == BATCH_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _count_expired(conn: sa.Connection, table: sa.Table, bound: dt.datetime) -> int:
    query = sa.select(sa.func.count()).where(table.c.occurred_at < bound)
    return int(conn.execute(query).scalar_one())


def _batch_delete(
    dialect: sa.Dialect, table: sa.Table, batch_size: int
) -> sa.Executable:
    """One batch: the oldest ``batch_size`` expired rows, by the time index."""
    cutoff = sa.bindparam("cutoff", type_=table.c.occurred_at.type)
    if _dialects.is_mysql(dialect):
        # MySQL and MariaDB refuse LIMIT in an IN subquery on the same
        # table, and have DELETE ... ORDER BY ... LIMIT instead.
        preparer = dialect.identifier_preparer
        name = preparer.format_table(table)
        column = preparer.quote("occurred_at")
        return sa.text(
            f"DELETE FROM {name} WHERE {column} < :cutoff "
            f"ORDER BY {column} LIMIT {int(batch_size)}"
        ).bindparams(cutoff)
    oldest = (
        sa.select(table.c.id)
        .where(table.c.occurred_at < cutoff)
        .order_by(table.c.occurred_at)
        .limit(batch_size)
        .scalar_subquery()
    )
    return table.delete().where(table.c.id.in_(oldest))


@contextlib.contextmanager
def _transaction(engine: sa.Engine) -> t.Iterator[sa.Connection]:
    """A short transaction for one batch, with the dialect's lock settings."""
    if _dialects.is_mysql(engine.dialect):
        # No gap locks: the batch locks the rows it deletes and no range a
        # concurrent INSERT might need.
        engine = engine.execution_options(isolation_level="READ COMMITTED")
    with engine.connect() as conn, _sqlite_cache(conn), conn.begin():
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {BATCH_LOCK_TIMEOUT_MS}")
        yield conn


@contextlib.contextmanager
def _sqlite_cache(conn: sa.Connection) -> t.Iterator[None]:
    """On SQLite, a page cache that holds one batch's changes.

    A batch touches a page of every secondary index for most of its rows;
    with SQLite's default 2 MB cache it spills them to the file before the
    commit, with extra writes and syncs, several times per batch. The
    pooled connection gets its own setting back afterwards.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    previous = dbapi.execute("PRAGMA cache_size").fetchone()[0]
    dbapi.execute(f"PRAGMA cache_size = {SQLITE_CACHE_KIB}")
    try:
        yield
    finally:
        dbapi.execute(f"PRAGMA cache_size = {int(previous)}")


def _expired_partitions(
    conn: sa.Connection, table: sa.Table, cutoff: dt.datetime, *, end: bool = True
) -> list[str]:
    """Partitions of ``table`` whose upper bound is at or before ``cutoff``.

    Empty unless ``table`` is a PostgreSQL table partitioned by range. The
    default partition and partitions without an upper bound are never
    listed.
    """
    parent = conn.execute(
        sa.text(
            "SELECT c.oid FROM pg_class c WHERE c.oid = to_regclass(:name) "
            "AND c.relkind = 'p'"
        ),
        {"name": table.fullname},
    ).scalar()
    if parent is None:
        return []
    children = conn.execute(
        sa.text(
            "SELECT c.oid::regclass::text, pg_get_expr(c.relpartbound, c.oid) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = :parent ORDER BY 1"
        ),
        {"parent": parent},
    ).all()
    expired = []
    for name, bound in children:
        match = _BOUND.match(bound or "")
        if match is None:  # DEFAULT, or not a range partition
            continue
        high = match.group("high").strip()
        if not (high.startswith("'") and high.endswith("'")):
            continue  # MAXVALUE, or several columns
        ends = conn.execute(
            sa.text("SELECT CAST(:high AS timestamptz) <= :cutoff"),
            {"high": high[1:-1].replace("''", "'"), "cutoff": cutoff},
        ).scalar()
        if ends:
            expired.append(name)
    if end:
        conn.rollback()
    return expired


def _drop_partition(engine: sa.Engine, name: str) -> int | None:
    """Drop one expired partition; its row count, or None if it stayed."""
    for attempt in range(DROP_ATTEMPTS):
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {DROP_LOCK_TIMEOUT_MS}")
                rows = conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar()
                conn.exec_driver_sql(f"DROP TABLE {name}")
                return int(rows or 0)
        except sa_exc.OperationalError:
            # Lock not granted in time: a long query holds the table. Let the
            # writer through and try again a little later.
            time.sleep(0.05 * (attempt + 1))
    return None


def partman_config(conn: sa.Connection, table: sa.Table) -> dict[str, t.Any] | None:
    """pg_partman's ``part_config`` row of ``table`` (with the extension's
    schema as ``extension_schema``), or None when pg_partman does not manage
    it (or is not installed)."""
    schema = conn.execute(
        sa.text(
            "SELECT extnamespace::regnamespace::text FROM pg_extension "
            "WHERE extname = 'pg_partman'"
        )
    ).scalar()
    if schema is None:
        return None
    qualified = conn.execute(
        sa.text(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(:name)"
        ),
        {"name": table.fullname},
    ).scalar()
    quoted = conn.dialect.identifier_preparer.quote_schema(schema)
    row = (
        conn.execute(
            sa.text(
                "SELECT parent_table, partition_interval, premake, retention, "
                f"retention_keep_table FROM {quoted}.part_config "
                "WHERE parent_table = :parent"
            ),
            {"parent": qualified},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return {**row, "extension_schema": schema}


def _children(conn: sa.Connection, table: sa.Table) -> set[str]:
    return set(
        conn.execute(
            sa.text(
                "SELECT inhrelid::regclass::text FROM pg_inherits "
                "WHERE inhparent = to_regclass(:name)"
            ),
            {"name": table.fullname},
        ).scalars()
    )


def _drop_with_partman(
    engine: sa.Engine, table: sa.Table, config: dict[str, t.Any], cutoff: dt.datetime
) -> dict[str, int]:
    """Drop the partitions that end at or before ``cutoff`` with pg_partman's
    ``drop_partition_time``; the row count of each partition it took out of
    the table (dropped, or detached where ``retention_keep_table`` says so)."""
    quoted = engine.dialect.identifier_preparer.quote_schema(config["extension_schema"])
    drop = sa.text(
        f"SELECT {quoted}.drop_partition_time(:parent, "
        "p_retention => interval '0 seconds', p_reference_timestamp => :reference)"
    )
    for attempt in range(DROP_ATTEMPTS):
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {DROP_LOCK_TIMEOUT_MS}")
                before = _expired_partitions(conn, table, cutoff, end=False)
                counts = {
                    name: int(
                        conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar()
                        or 0
                    )
                    for name in before
                }
                # pg_partman drops a partition whose end is before the
                # reference: a microsecond past the cutoff takes the one
                # ending at it too.
                conn.execute(
                    drop,
                    {
                        "parent": config["parent_table"],
                        "reference": cutoff + dt.timedelta(microseconds=1),
                    },
                )
                left = _children(conn, table)
                return {n: rows for n, rows in counts.items() if n not in left}
        except sa_exc.OperationalError:
            time.sleep(0.05 * (attempt + 1))
    return {}
