"""PostgreSQL parts of ``flask telemetry check``: a pooler in the way, partitions.

A pooler (PgBouncer, a cloud proxy) is recognised from the connection's own
ends: the server sees the client at another address or port than the one
this process's socket has (``inet_client_addr()``/``inet_client_port()``
against ``getsockname()``), so whatever sits between relays the bytes. In
transaction pooling a server connection changes between transactions, and
psycopg 3's server-side prepared statements (made after
``prepare_threshold`` executions, 5 by default) then fail; check says so and
gives the setting.

A partitioned ``telemetry_traces`` is described (pg_partman's ``part_config``
when the extension manages it) and probed: a row for today and for each
premade day ahead is inserted in a transaction that is rolled back, and the
partition it lands in is read back, so that a missing day is reported
before writes reach it.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import typing as t

import sqlalchemy as sa

from ..reading.prune import partman_config
from ..storage.model import TABLE_NAME


class _Report(t.Protocol):
    """Where the check's lines go (the check command's report)."""

    def ok(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def fail(self, message: str) -> None: ...


#: What telemetry needs through a pooler in transaction mode, as docs say it.
PGBOUNCER_FIX = (
    'SQLALCHEMY_ENGINE_OPTIONS = {"connect_args": {"prepare_threshold": None}} '
    "(see the scaling docs)"
)


def _local_address(dbapi: t.Any) -> tuple[str, int] | None:
    """This process's end of the connection's socket; None for a Unix socket."""
    pgconn = getattr(dbapi, "pgconn", None)  # psycopg 3
    fd = pgconn.socket if pgconn is not None else None
    if fd is None and callable(getattr(dbapi, "fileno", None)):  # psycopg2
        fd = dbapi.fileno()
    if fd is None:
        return None
    with socket.socket(fileno=os.dup(fd)) as sock:
        name = sock.getsockname()
    if not isinstance(name, tuple):
        return None
    return str(name[0]), int(name[1])


def through_pooler(conn: sa.Connection) -> str | None:
    """How the server sees this connection when something sits in between;
    None when the connection goes straight to the server (or no telling)."""
    dbapi = conn.connection.dbapi_connection
    try:
        local = _local_address(dbapi)
    except OSError:
        return None
    row = conn.execute(
        sa.text("SELECT host(inet_client_addr()), inet_client_port()")
    ).one()
    conn.rollback()
    seen = None if row[1] is None else (str(row[0]), int(row[1]))
    if local == seen:
        return None
    if seen is None:
        return "a Unix socket on the server's side"
    return f"{seen[0]}:{seen[1]} (this connection is {_shown(local)})"


def _shown(address: tuple[str, int] | None) -> str:
    return "a Unix socket" if address is None else f"{address[0]}:{address[1]}"


def check_pooler(conn: sa.Connection, report: _Report) -> None:
    """Say whether a pooler sits in the way, and whether the driver's
    settings survive transaction pooling."""
    seen = through_pooler(conn)
    if seen is None:
        return
    dbapi = conn.connection.dbapi_connection
    threshold = getattr(dbapi, "prepare_threshold", None)
    where = (
        "a pooler or proxy (PgBouncer?) sits between this app and PostgreSQL: "
        f"the server sees the client at {seen}"
    )
    if threshold is not None:
        report.warn(
            f"{where}; psycopg prepares a statement after {threshold} executions "
            "(prepare_threshold), which fails through PgBouncer in transaction "
            "mode (prepared statement does not exist, or already exists): "
            f"set {PGBOUNCER_FIX}"
        )
    else:
        report.ok(
            f"{where}; no server-side prepared statements: fine in transaction mode"
        )


def _is_partitioned(conn: sa.Connection, table: sa.Table) -> bool:
    return bool(
        conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_class "
                "WHERE oid = to_regclass(:name) AND relkind = 'p'"
            ),
            {"name": table.fullname},
        ).scalar()
    )


def _landing(
    conn: sa.Connection, table: sa.Table, when: dt.datetime, statement_timeout_ms: int
) -> tuple[str | None, bool]:
    """The partition a row of ``when`` lands in (rolled back), and whether it
    is the default partition; (None, False) when no partition takes it."""
    with conn.begin() as trans:
        try:
            conn.exec_driver_sql(
                f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"
            )
            name: t.Any = conn.execute(
                table.insert()
                .values(
                    actor_type="system",
                    event_type="system_exception",
                    severity="debug",
                    metadata=None,
                    occurred_at=when,
                )
                .returning(sa.literal_column("tableoid::regclass::text"))
            ).scalar_one()
            default = conn.execute(
                sa.text(
                    "SELECT partdefid = to_regclass(:child) FROM pg_partitioned_table "
                    "WHERE partrelid = to_regclass(:parent)"
                ),
                {"child": name, "parent": table.fullname},
            ).scalar()
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == "23514":  # no partition
                trans.rollback()
                return None, False
            raise
        trans.rollback()
    return str(name), bool(default)


def check_partitions(
    conn: sa.Connection, table: sa.Table, statement_timeout_ms: int, report: _Report
) -> None:
    """Describe a partitioned table and report the days that have no partition."""
    if not _is_partitioned(conn, table):
        conn.rollback()
        return
    config = partman_config(conn, table)
    conn.rollback()
    days = 1
    if config is not None:
        days = max(1, min(int(config["premake"] or 1), 7))
        report.ok(
            f"{TABLE_NAME} is partitioned by pg_partman "
            f"({config['partition_interval']} partitions, {config['premake']} "
            f"premade, retention {config['retention'] or 'none'})"
        )
        if config["retention"] is None:
            report.warn(
                "pg_partman has no retention for it: old partitions are dropped "
                "only by `flask telemetry prune`"
            )
    else:
        report.ok(f"{TABLE_NAME} is partitioned (not by pg_partman)")
    today = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    missing = 0
    fix = (
        f"run `SELECT {config['extension_schema']}.partition_gap_fill("
        f"'{config['parent_table']}')` for a gap, and schedule "
        f"`CALL {config['extension_schema']}.run_maintenance_proc()`"
        if config is not None
        else "create the day's partition (docs/examples/partitioning.sql)"
    )
    for ahead in range(days + 1):
        when = today + dt.timedelta(days=ahead)
        label = "today" if ahead == 0 else f"{when:%Y-%m-%d}"
        name, default = _landing(conn, table, when, statement_timeout_ms)
        if name is None:
            missing += 1
            message = (
                f"no partition takes the rows of {label} (UTC) and there is no "
                f"default partition: those events {{}} lost; {fix}"
            )
            if ahead == 0:
                report.fail(message.format("are"))
            else:
                report.warn(message.format("will be"))
        elif default:
            missing += 1
            report.warn(
                f"the partition of {label} (UTC) is missing: its rows land in "
                f"the default partition {name}; {fix}"
            )
    if not missing:
        last = today + dt.timedelta(days=days)
        report.ok(f"partitions are ready through {last:%Y-%m-%d} (UTC)")
