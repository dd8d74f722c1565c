"""Everything one database does differently: timeouts, fast paths, time zones.

The writer (:mod:`.writer`) validates and orchestrates; the functions and
the :class:`Dialects` object here know PostgreSQL, MySQL/MariaDB and SQLite:
telemetry's lock and statement timeouts scoped to its own transactions, the
psycopg path that sends BEGIN and its settings in one round trip, connect
timeouts on a bind of telemetry's own, the in-memory SQLite database that
telemetry shares with the application, and how each binds ``occurred_at``.

How a batch reaches each driver is in :mod:`.bulk`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import typing as t

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from . import row
from .bulk import Bulk


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


#: Turns a validated row into what the insert binds: ``(values in column
#: order, the metadata's JSON text, the aware occurred_at)``.
Convert = t.Callable[[tuple[t.Any, ...], "str | None", dt.datetime], t.Any]

_UTC = dt.UTC
#: Where the metadata (the one JSON column) and the time (the one datetime
#: column) are in a row's values.
_METADATA = next(i for i, c in enumerate(row.COLUMNS) if c.kind is dict)
_OCCURRED_AT = next(i for i, c in enumerate(row.COLUMNS) if c.kind is dt.datetime)
_METADATA_NAME = row.FIELDS[_METADATA]
_OCCURRED_AT_NAME = row.FIELDS[_OCCURRED_AT]


def _replacing(name: str, when: str) -> str:
    """``name(values, text, when)``: ``values`` with the metadata's text and
    ``when`` (an expression of ``when``) in their places, written out once
    from the columns: the other values are taken by slices, so that the
    columns as declared today (metadata and time last) give
    ``(*values[:8], text, when)``."""
    parts, start = [], 0
    for index, value in sorted(((_METADATA, "text"), (_OCCURRED_AT, when))):
        if index > start:
            parts.append(f"*values[{start or ''}:{index}]")
        parts.append(value)
        start = index + 1
    if start < len(row.COLUMNS):
        parts.append(f"*values[{start}:]")
    return f"def {name}(values, text, when):\n    return ({', '.join(parts)},)\n"


def _path(dialect: sa.Dialect) -> str:
    """How rows reach ``dialect``: ``copy`` (psycopg's COPY), ``sqlite``
    or ``pymysql`` (multi-row INSERTs of the compiled INSERT on the driver,
    the time as text, see :mod:`.bulk`) or ``model`` (SQLAlchemy's
    executemany through the model's column types)."""
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return "copy"
    if (dialect.name, dialect.driver) == ("sqlite", "pysqlite"):
        return "sqlite"
    if dialect.name in ("mysql", "mariadb") and dialect.driver == "pymysql":
        return "pymysql"
    return "model"


def converter(dialect: sa.Dialect, model: bool = False) -> Convert:
    """What :meth:`Dialects.insert` binds for a validated row on ``dialect``.

    Each value is what the model's column type would send:

    - metadata: the JSON text, UTF-8 characters as they are (SQLAlchemy's
      JSON type would escape them as ``\\uXXXX``; the privacy settings'
      size limit counts them as stored); None is SQL NULL.
    - occurred_at: timestamptz on PostgreSQL takes the aware value. DATETIME
      columns (SQLite, MySQL, MariaDB) have no zone: the UTC time as the
      text ``YYYY-MM-DD HH:MM:SS.ffffff``, which is SQLAlchemy's SQLite
      storage format and what PyMySQL sends for a naive datetime.

    On sqlite3 and PyMySQL the rows are tuples in column order of str, int
    (``actor_id``) and None only, as validated; PyMySQL's escaping makes
    their literals (see :mod:`.bulk`), and would take any other
    type the same way executemany does.

    With ``model=True`` (or on a driver without a path of its own) the rows
    are dicts keyed by column for SQLAlchemy's INSERT through the model's
    column types.
    """
    path = "model" if model else _path(dialect)
    if path == "copy":
        copy_row: Convert = row.define("copy_row", _replacing("copy_row", "when"), {})
        return copy_row
    if path in ("sqlite", "pymysql"):
        source = _replacing("text_row", "utc_text(when)")
        text_row: Convert = row.define("text_row", source, {"utc_text": _utc_text()})
        return text_row
    name = dialect.name

    def model_row(
        values: tuple[t.Any, ...], text: str | None, when: dt.datetime
    ) -> t.Any:
        # Another driver: SQLAlchemy binds the model's types (its JSON type
        # encodes the metadata again, with \\uXXXX escapes).
        data = dict(zip(row.FIELDS, values, strict=True))
        metadata = values[_METADATA]
        if metadata is not None and type(metadata) is not dict:
            data[_METADATA_NAME] = (
                metadata.objects() if type(metadata) is row.JsonText else dict(metadata)
            )
        if name != "postgresql":
            if when.tzinfo is not _UTC:
                when = when.astimezone(_UTC)
            if name != "sqlite":
                when = when.replace(tzinfo=None)
        data[_OCCURRED_AT_NAME] = when
        return data

    return model_row


#: Seconds whose text :func:`_utc_text` keeps, at most.
_SECONDS_KEPT = 1024


def _utc_text(
    kept: int = _SECONDS_KEPT,
) -> t.Callable[[dt.datetime], str]:
    """``when.astimezone(UTC).isoformat(" ", "microseconds")[:26]``, at a
    third of the cost: ``YYYY-MM-DD HH:MM:SS.ffffff``.

    isoformat builds its text with C ``printf``-style formatting, and
    that of an aware datetime formats its UTC offset as well (about
    13,000 instructions a row). A batch's rows fall in a few seconds: the
    text up to the second is kept per second (at most ``kept`` of them,
    then forgotten at once) and the microseconds are added to it. Safe
    from several threads: a lost race formats the same text twice.
    """
    seconds: dict[tuple[int, ...], str] = {}
    get = seconds.get

    def utc_text(when: dt.datetime) -> str:
        if when.tzinfo is not _UTC:
            when = when.astimezone(_UTC)
        key = (when.second, when.minute, when.hour, when.day, when.month, when.year)
        head = get(key)
        if head is None:
            if len(seconds) >= kept:
                seconds.clear()
            head = seconds[key] = when.isoformat(" ", "seconds")[:19] + "."
        # %-formatting: an f-string's format spec costs 60% more here.
        return head + "%06d" % when.microsecond  # noqa: UP031

    return utc_text


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


def _rollback(conn: sa.Connection) -> None:
    """Roll back the driver's connection of ``conn``, whatever its state."""
    with contextlib.suppress(Exception):
        dbapi = conn.connection.dbapi_connection
        if dbapi is not None:
            dbapi.rollback()


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
        self._bulk = Bulk()

    def insert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        rows: list[t.Any],
        *,
        shared: bool = False,
    ) -> None:
        """Insert ``rows`` (from :func:`converter`) into ``table`` and commit,
        with the timeouts."""
        path = _path(conn.dialect)
        if path == "copy":
            self._bulk.copy_psycopg(conn, table, rows, "BEGIN; " + self._pg_settings)
            return
        try:
            with self._timeouts(conn, shared):
                if path == "sqlite":
                    self._bulk.insert_sqlite(conn, table, rows)
                elif path == "pymysql":
                    self._bulk.insert_pymysql(conn, table, rows)
                else:
                    conn.execute(table.insert(), rows)
                conn.commit()
        except BaseException:
            # Once commit() was called SQLAlchemy does not roll back when the
            # connection goes back to the pool, even if the commit failed: on
            # SQLite the connection would keep its transaction and its lock,
            # and the application's next write would find the database
            # locked. Roll back on the driver's connection ourselves.
            _rollback(conn)
            raise

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
