"""Everything one database does differently: timeouts, fast paths, time zones.

The writer (:mod:`.writer`) validates and orchestrates; the functions and
the :class:`Dialects` object here know PostgreSQL, MySQL/MariaDB and SQLite:
telemetry's lock and statement timeouts scoped to its own transactions, the
psycopg path that sends BEGIN and its settings in one round trip, connect
timeouts on a bind of telemetry's own, the in-memory SQLite database that
telemetry shares with the application, and how each binds ``occurred_at``.

How a batch reaches each driver (:func:`converter` makes its rows):

- psycopg: ``COPY`` into the model's table, on the DBAPI connection.
- sqlite3: multi-row INSERTs of a power of two of rows, bound by sqlite3.
- PyMySQL: the multi-row INSERTs its ``executemany`` would send, byte for
  byte, rendered here and sent on the DBAPI cursor (:func:`_pymysql_insert`).
  Every literal is made by PyMySQL's own ``Connection.escape``, so the
  session's NO_BACKSLASH_ESCAPES mode, the charset and the connection's
  encoders hold; what is saved is executemany's work around it: a batch
  repeats most values, whose literals are made once per statement, and a
  row is joined, not ``%``-formatted. No SQLAlchemy event fires for these
  statements (they are telemetry's own, which the slow-query integration
  never records anyway); driver errors are raised as SQLAlchemy's.
- Any other driver: SQLAlchemy's INSERT through the model's column types.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import re
import sqlite3
import typing as t

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from . import row
from .pacing import SLICE, pause


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
_NAMED = re.compile(r"%\((\w+)\)s")
# The converters below put the metadata text and the time in the last two
# places, where the declaration has them.
assert row.FIELDS[-2:] == ("metadata", "occurred_at")
_HEAD = len(row.FIELDS) - 2
#: At most this many rows per SQLite INSERT (a power of two). Before SQLite
#: 3.8.8 a VALUES list counted as a compound SELECT, limited to 500 terms.
_SQLITE_MOST_ROWS = 512 if sqlite3.sqlite_version_info >= (3, 8, 8) else 256
_chain = itertools.chain.from_iterable


def _power_of_two(count: int) -> int:
    """The largest power of two not above ``count`` (at least 1)."""
    return 1 << (max(1, count).bit_length() - 1)


def _path(dialect: sa.Dialect) -> str:
    """How rows reach ``dialect``: ``copy`` (psycopg's COPY), ``text``
    (multi-row INSERTs of the compiled INSERT on sqlite3 or PyMySQL, the
    time as text) or ``model`` (SQLAlchemy's executemany through the model's
    column types)."""
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return "copy"
    if (dialect.name, dialect.driver) == ("sqlite", "pysqlite") or (
        dialect.name in ("mysql", "mariadb") and dialect.driver in ("pymysql",)
    ):
        return "text"
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
    their literals (see :func:`_pymysql_insert`), and would take any other
    type the same way executemany does.

    With ``model=True`` (or on a driver without a path of its own) the rows
    are dicts keyed by column for SQLAlchemy's INSERT through the model's
    column types.
    """
    path = "model" if model else _path(dialect)
    if path == "copy":

        def copy_row(
            values: tuple[t.Any, ...], text: str | None, when: dt.datetime
        ) -> t.Any:
            return (*values[:_HEAD], text, when)

        return copy_row
    if path == "text":

        def text_row(
            values: tuple[t.Any, ...], text: str | None, when: dt.datetime
        ) -> t.Any:
            if when.tzinfo is not _UTC:
                when = when.astimezone(_UTC)
            return (*values[:_HEAD], text, when.isoformat(" ", "microseconds")[:26])

        return text_row
    name = dialect.name

    def model_row(
        values: tuple[t.Any, ...], text: str | None, when: dt.datetime
    ) -> t.Any:
        # Another driver: SQLAlchemy binds the model's types (its JSON type
        # encodes the metadata again, with \\uXXXX escapes).
        data = dict(zip(row.FIELDS, values, strict=True))
        metadata = data["metadata"]
        if metadata is not None and type(metadata) is not dict:
            data["metadata"] = dict(metadata)
        if name != "postgresql":
            if when.tzinfo is not _UTC:
                when = when.astimezone(_UTC)
            if name != "sqlite":
                when = when.replace(tzinfo=None)
        data["occurred_at"] = when
        return data

    return model_row


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


def _rollback(conn: sa.Connection) -> None:
    """Roll back the driver's connection of ``conn``, whatever its state."""
    with contextlib.suppress(Exception):
        dbapi = conn.connection.dbapi_connection
        if dbapi is not None:
            dbapi.rollback()


def _pymysql_insert(cursor: t.Any, prefix: bytes, rows: list[t.Any]) -> None:
    """Send ``rows`` (tuples from :func:`converter`) as the multi-row INSERTs
    PyMySQL's ``executemany`` would send: the same statements, byte for byte.

    executemany renders each row with ``%`` formatting of its values, each
    escaped by the connection; ``Connection.escape`` with the connection's
    encoders is the function its ``mogrify`` calls for each value (through
    ``literal()`` before PyMySQL 1.2), and it alone makes every literal here:
    the session's NO_BACKSLASH_ESCAPES mode, the charset and any encoders
    given to the connection hold as they would. A batch repeats most values
    (actor, event type, severity, endpoint, address, user agent): the literal
    of a value of exactly str, int or None is made once per statement, not
    per row; values of other types (equal values of another type may render
    differently: True is 1) are escaped every time. Rows are joined into
    statements up to the cursor's ``max_stmt_length``, as executemany does.
    """
    dbapi = cursor.connection
    escape, encoders, encoding = dbapi.escape, dbapi.encoders, dbapi.encoding
    most = cursor.max_stmt_length
    known: dict[t.Any, str] = {}
    get = known.get
    statement: bytearray | None = None
    for number, values in enumerate(rows, 1):
        if not number % SLICE:
            pause()  # see .pacing
        literals = []
        for value in values:
            kind = type(value)
            if kind is str or kind is int or value is None:
                literal = get(value)
                if literal is None:
                    literal = known[value] = escape(value, encoders)
            else:
                literal = escape(value, encoders)
            literals.append(literal)
        text = f"({', '.join(literals)})".encode(encoding)
        if statement is None:
            statement = bytearray(prefix)
        elif len(statement) + len(text) + 1 > most:
            cursor.execute(statement)
            # The next statement's literals are made by the connection as
            # this one left it, as executemany makes them.
            known.clear()
            statement = bytearray(prefix)
        else:
            statement += b","
        statement += text
    if statement is not None:
        cursor.execute(statement)


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
        self._compiled: dict[tuple[str, str, str], str] = {}
        #: Rows per SQLite INSERT, from the connection's limit on parameters.
        self._sqlite_rows = 0

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
            self._copy_psycopg(conn, table, rows)
            return
        try:
            with self._timeouts(conn, shared):
                if path == "text" and conn.dialect.name == "sqlite":
                    self._insert_sqlite(conn, table, rows)
                elif path == "text":
                    self._insert_pymysql(conn, table, rows)
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

    def _statement(self, dialect: sa.Dialect, table: sa.Table) -> str:
        """The model table's INSERT of every column, compiled once."""
        key = (dialect.name, dialect.paramstyle, table.fullname)
        sql = self._compiled.get(key)
        if sql is None:
            compiled = table.insert().compile(
                dialect=dialect, column_keys=list(row.FIELDS)
            )
            sql = str(compiled)
            if dialect.paramstyle == "pyformat":  # PyMySQL: %(name)s -> %s
                order = tuple(_NAMED.findall(sql))
                sql = _NAMED.sub("%s", sql)
            else:
                order = tuple(compiled.positiontup or ())
            if order != row.FIELDS:  # the rows are tuples in column order
                raise RuntimeError(f"INSERT parameters in order {order}")
            self._compiled[key] = sql
        return sql

    def _insert_sqlite(
        self, conn: sa.Connection, table: sa.Table, rows: list[t.Any]
    ) -> None:
        # Multi-row INSERTs, not executemany: sqlite3 releases the GIL around
        # each step, so executemany gives it up and waits to get it back once
        # per row, and a busy request thread holds it for up to the switch
        # interval (5 ms) each time. A statement of many rows is one step:
        # one hand-off per statement, and less work per row. Statements hold
        # a power of two of rows, so that a connection's statement cache
        # keeps a handful of them whatever the batch sizes.
        most = self._sqlite_rows
        if most == 0:
            dbapi: t.Any = conn.connection.dbapi_connection
            limit = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            most = self._sqlite_rows = _power_of_two(
                min(_SQLITE_MOST_ROWS, max(1, limit // len(row.FIELDS)))
            )
        start, left = 0, len(rows)
        while left:
            size = most if left >= most else _power_of_two(left)
            conn.exec_driver_sql(
                self._values(conn.dialect, table, size),
                tuple(_chain(rows[start : start + size])),
            )
            start += size
            left -= size

    def _values(self, dialect: sa.Dialect, table: sa.Table, size: int) -> str:
        """The INSERT of :meth:`_statement` with ``size`` rows of values."""
        key = (dialect.name, f"values {size}", table.fullname)
        sql = self._compiled.get(key)
        if sql is None:
            head, _, group = self._statement(dialect, table).rpartition(" VALUES ")
            sql = self._compiled[key] = f"{head} VALUES {', '.join([group] * size)}"
        return sql

    def _insert_pymysql(
        self, conn: sa.Connection, table: sa.Table, rows: list[t.Any]
    ) -> None:
        # The multi-row INSERTs that PyMySQL's executemany would send, byte
        # for byte, sent on the DBAPI cursor: see _pymysql_insert. Driver
        # errors are raised as SQLAlchemy's, naming the INSERT with its
        # placeholders (not the values).
        sql = self._statement(conn.dialect, table)
        key = ("pymysql", "", table.fullname)
        prefix = self._compiled.get(key)
        if prefix is None:
            head, _, group = sql.rpartition(" VALUES ")
            if group != f"({', '.join(['%s'] * len(row.FIELDS))})":
                raise RuntimeError(f"INSERT values {group!r}")
            # What executemany keeps of the statement before its VALUES.
            prefix = self._compiled[key] = f"{head} VALUES " % ()
        dbapi: t.Any = conn.connection.dbapi_connection
        if not isinstance(dbapi, conn.dialect.loaded_dbapi.connections.Connection):
            conn.exec_driver_sql(sql, rows)  # not PyMySQL's own: its executemany
            return
        try:
            with dbapi.cursor() as cursor:
                _pymysql_insert(cursor, prefix.encode(dbapi.encoding), rows)
        except Exception as exc:
            _raise_as_sqlalchemy(conn, dbapi, exc, sql)

    def _copy_psycopg(
        self, conn: sa.Connection, table: sa.Table, rows: list[t.Any]
    ) -> None:
        # COPY into the model's table, in a transaction begun with its
        # settings in one round trip: BEGIN and the SET LOCALs go to psycopg
        # as one simple query on a connection lent in autocommit mode, then
        # COPY, then COMMIT (psycopg 3 commits and rolls back by the server's
        # transaction status, autocommit or not). All of it on the DBAPI
        # connection: SQLAlchemy's execution machinery would cost a tenth of
        # a single-row insert; driver errors are raised as SQLAlchemy's.
        dbapi: t.Any = conn.connection.dbapi_connection
        assert dbapi is not None
        key = ("copy", "", table.fullname)
        copy_sql = self._compiled.get(key)
        if copy_sql is None:
            quote = conn.dialect.identifier_preparer
            columns = ", ".join(quote.quote(name) for name in row.FIELDS)
            copy_sql = self._compiled[key] = (
                f"COPY {quote.format_table(table)} ({columns}) FROM STDIN"
            )
        begin = "BEGIN; " + self._pg_settings
        dbapi.autocommit = True
        try:
            statement = begin
            try:
                dbapi.execute(begin)
                statement = copy_sql
                with dbapi.cursor() as cursor, cursor.copy(copy_sql) as copy:
                    write = copy.write_row
                    for number, values in enumerate(rows, 1):
                        if not number % SLICE:
                            pause()  # see .pacing
                        write(values)
                statement = "COMMIT"
                dbapi.commit()
            except Exception as exc:
                _raise_as_sqlalchemy(conn, dbapi, exc, statement)
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
