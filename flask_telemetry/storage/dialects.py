"""Everything one database does differently: timeouts, fast paths, time zones.

The writer (:mod:`.writer`) validates and orchestrates; the functions and
the :class:`Dialects` object here know PostgreSQL, MySQL/MariaDB and SQLite:
telemetry's lock and statement timeouts scoped to its own transactions, the
psycopg path that sends BEGIN and its settings in one round trip, connect
timeouts on a bind of telemetry's own, the in-memory SQLite database that
telemetry shares with the application, and how each binds ``occurred_at``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import typing as t

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

Row = dict[str, t.Any]


def is_shared_memory(engine: sa.Engine) -> bool:
    """True for an in-memory SQLite database: one connection for everyone."""
    return engine.dialect.name == "sqlite" and (
        engine.url.database in (None, "", ":memory:")
        or "mode=memory" in str(engine.url)
    )


def in_transaction(engine: sa.Engine) -> bool:
    """Whether the one connection of an in-memory SQLite database is inside
    the application's transaction.

    Looked up on the pool, not checked out: returning a checked-out
    connection to the pool rolls it back, which would undo the very work
    this check protects.
    """
    pool = engine.pool
    record = getattr(pool, "connection", None)  # StaticPool
    if record is None and hasattr(pool, "_conn"):  # SingletonThreadPool
        current = getattr(pool._conn, "current", None)
        record = current() if current is not None else None
    dbapi = getattr(record, "dbapi_connection", None)
    return bool(getattr(dbapi, "in_transaction", False))


def bindable(rows: list[Row], dialect: str) -> list[Row]:
    """Make each row's ``occurred_at`` what ``dialect`` binds, in place.

    DATETIME columns (MySQL, MariaDB, SQLite) have no zone: naive UTC.
    SQLAlchemy's SQLite DATETIME binds the fields and ignores the zone, so a
    UTC value goes as it is there; timestamptz takes the aware value.
    """
    if dialect == "postgresql":
        return rows
    for row in rows:
        occurred = row["occurred_at"]
        zone = occurred.tzinfo
        if zone is None or (zone is dt.UTC and dialect == "sqlite"):
            continue
        if zone is not dt.UTC:
            occurred = occurred.astimezone(dt.UTC)
        row["occurred_at"] = occurred.replace(tzinfo=None)
    return rows


def limit_connects(
    engine: sa.Engine, connect_timeout_ms: int, *, read_budget_ms: int
) -> None:
    """Give new connections of ``engine`` a connect timeout (once per engine).

    Only for an engine given to telemetry alone (a bind of its own), and only
    where the bind's options set none. The MySQL drivers' connect timeout
    covers the TCP connect only, not the server's greeting: a read timeout
    bounds that (and any read, so it leaves room for ``read_budget_ms``, the
    lock and statement timeouts).
    """
    if engine.dialect.name == "sqlite":
        return
    driver = engine.dialect.driver
    if driver not in ("psycopg", "psycopg2", "pymysql", "mysqldb"):
        return
    seconds = max(1, -(-int(connect_timeout_ms) // 1000))
    reads = None
    if driver in ("pymysql", "mysqldb"):
        reads = max(seconds, -(-read_budget_ms // 1000) + 1)

    def connect_timeout(
        dialect: t.Any, record: t.Any, cargs: t.Any, cparams: dict[str, t.Any]
    ) -> None:
        cparams.setdefault("connect_timeout", seconds)
        if reads is not None:
            cparams.setdefault("read_timeout", reads)

    if not sa.event.contains(engine, "do_connect", connect_timeout):
        sa.event.listen(engine, "do_connect", connect_timeout)


def _raise_as_sqlalchemy(
    conn: sa.Connection, dbapi: t.Any, exc: Exception, statement: str
) -> t.NoReturn:
    """Raise a driver error met outside SQLAlchemy as SQLAlchemy would have:
    wrapped in its DBAPIError class, the connection invalidated on a
    disconnect."""
    dialect = conn.dialect
    base = dialect.loaded_dbapi.Error
    if not isinstance(exc, base):
        raise exc
    disconnect = dialect.is_disconnect(exc, dbapi, None)
    if disconnect:
        conn.invalidate(exc)
    raise sa_exc.DBAPIError.instance(
        statement,
        None,
        exc,
        base,
        connection_invalidated=disconnect,
        dialect=dialect,
    ) from exc


class Dialects:
    """Runs telemetry's INSERT in a transaction of its own, with its timeouts.

    Lock and statement timeouts are scoped to the transaction on
    PostgreSQL, set and restored around it on MySQL/MariaDB, and the SQLite
    busy timeout is set and restored the same way (except on a shared
    in-memory database, whose one connection is the application's).
    """

    def __init__(
        self,
        *,
        lock_timeout_ms: int,
        statement_timeout_ms: int,
        durable_commit: bool,
    ) -> None:
        self.lock_timeout_ms = lock_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        # PostgreSQL settings of telemetry's own transactions.
        self._pg_settings = (
            f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}; "
            f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"
        )
        if not durable_commit:
            # Best-effort rows need not wait for the WAL flush: a database
            # crash may lose the last moments of telemetry, never the
            # application's data, whose transactions keep their own setting.
            self._pg_settings += "; SET LOCAL synchronous_commit = off"

    def insert(
        self,
        conn: sa.Connection,
        statement: sa.Insert,
        rows: list[Row],
        *,
        shared: bool = False,
    ) -> None:
        """Execute ``statement`` for ``rows`` and commit, with the timeouts."""
        if conn.dialect.driver == "psycopg":
            self._insert_psycopg(conn, statement, rows)
            return
        with self._timeouts(conn, shared):
            conn.execute(statement, rows)
            conn.commit()

    def _insert_psycopg(
        self, conn: sa.Connection, statement: sa.Insert, rows: list[Row]
    ) -> None:
        # The transaction and its settings in one round trip: BEGIN and the
        # SET LOCALs go to psycopg as one simple query on a connection lent
        # in autocommit mode, instead of psycopg's own BEGIN and then the
        # SETs. Sent on the DBAPI connection: through exec_driver_sql the
        # same query costs SQLAlchemy's execution machinery again, which is
        # a tenth of a single-row insert. psycopg 3 commits and rolls back by
        # the server's transaction status, autocommit or not.
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        begin = "BEGIN; " + self._pg_settings
        dbapi.autocommit = True
        try:
            try:
                dbapi.execute(begin)
            except Exception as exc:
                _raise_as_sqlalchemy(conn, dbapi, exc, begin)
            conn.execute(statement, rows)
            conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                dbapi.rollback()
            raise
        finally:
            try:
                dbapi.autocommit = False
            except Exception:  # a broken connection: never back to the pool
                conn.invalidate()

    @contextlib.contextmanager
    def _timeouts(self, conn: sa.Connection, shared: bool) -> t.Iterator[None]:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            conn.exec_driver_sql(self._pg_settings)
            yield
        elif dialect in ("mysql", "mariadb"):
            yield from self._mysql_timeouts(conn)
        elif dialect == "sqlite" and not shared:
            previous = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(self.lock_timeout_ms)}")
            try:
                yield
            finally:
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(previous or 0)}")
        else:
            yield

    def _mysql_timeouts(self, conn: sa.Connection) -> t.Iterator[None]:
        # Lock waits are whole seconds in MySQL; the session values are put
        # back so that the pooled connection returns to the application as it
        # was lent.
        lock_s = max(1, -(-int(self.lock_timeout_ms) // 1000))
        settings = [
            f"lock_wait_timeout = {lock_s}",
            f"innodb_lock_wait_timeout = {lock_s}",
        ]
        names = ["lock_wait_timeout", "innodb_lock_wait_timeout"]
        if getattr(conn.dialect, "is_mariadb", False):
            settings.append(
                f"max_statement_time = {self.statement_timeout_ms / 1000:.3f}"
            )
            names.append("max_statement_time")
        conn.exec_driver_sql("SET SESSION " + ", ".join(settings))
        try:
            yield
        finally:
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                conn.exec_driver_sql(
                    "SET SESSION " + ", ".join(f"{n} = DEFAULT" for n in names)
                )
