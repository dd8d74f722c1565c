"""How a batch reaches each driver, in one statement or a few.

:class:`~.dialects.Dialects` runs these inside telemetry's transaction and
its timeouts, and :func:`~.dialects.converter` makes the rows they take:


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
- Any other driver: SQLAlchemy's INSERT through the model's column types
  (in :mod:`.dialects`).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import sqlite3
import typing as t

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from . import row
from .pacing import paced

_NAMED = re.compile(r"%\((\w+)\)s")
#: At most this many rows per SQLite INSERT (a power of two). Before SQLite
#: 3.8.8 a VALUES list counted as a compound SELECT, limited to 500 terms.
_SQLITE_MOST_ROWS = 512 if sqlite3.sqlite_version_info >= (3, 8, 8) else 256
_chain = itertools.chain.from_iterable


def _power_of_two(count: int) -> int:
    """The largest power of two not above ``count`` (at least 1)."""
    return 1 << (max(1, count).bit_length() - 1)


def raise_as_sqlalchemy(
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
    for values in paced(rows):
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


class Bulk:
    """The bulk paths, with the statements each compiles once per table."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[str, str, str], str] = {}
        #: Rows per SQLite INSERT, from the connection's limit on parameters.
        self._sqlite_rows = 0

    def statement(self, dialect: sa.Dialect, table: sa.Table) -> str:
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

    def insert_sqlite(
        self, conn: sa.Connection, table: sa.Table, rows: list[t.Any]
    ) -> None:
        """Insert ``rows`` on sqlite3 as multi-row INSERTs.

        Multi-row INSERTs, not executemany: sqlite3 releases the GIL around each
        step, so executemany gives it up and waits to get it back once per row,
        and a busy request thread holds it for up to the switch interval (5 ms)
        each time. A statement of many rows is one step: one hand-off per
        statement, and less work per row. Statements hold a power of two of rows,
        so that a connection's statement cache keeps a handful of them whatever
        the batch sizes.
        """
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
        """The INSERT of :meth:`statement` with ``size`` rows of values."""
        key = (dialect.name, f"values {size}", table.fullname)
        sql = self._compiled.get(key)
        if sql is None:
            head, _, group = self.statement(dialect, table).rpartition(" VALUES ")
            sql = self._compiled[key] = f"{head} VALUES {', '.join([group] * size)}"
        return sql

    def insert_pymysql(
        self, conn: sa.Connection, table: sa.Table, rows: list[t.Any]
    ) -> None:
        """Insert ``rows`` on PyMySQL.

        The multi-row INSERTs that PyMySQL's executemany would send, byte for
        byte, sent on the DBAPI cursor: see _pymysql_insert. Driver errors are
        raised as SQLAlchemy's, naming the INSERT with its placeholders (not the
        values).
        """
        sql = self.statement(conn.dialect, table)
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
            raise_as_sqlalchemy(conn, dbapi, exc, sql)

    def copy_psycopg(
        self, conn: sa.Connection, table: sa.Table, rows: list[t.Any], begin: str
    ) -> None:
        """Insert ``rows`` on psycopg with COPY, and commit.

        COPY into the model's table, in a transaction begun with its settings in
        one round trip: ``begin`` (BEGIN and the SET LOCALs of telemetry's
        transaction) goes to psycopg as one simple query on a connection
        lent in autocommit mode, then COPY, then COMMIT (psycopg 3
        commits and rolls back by the server's transaction status, autocommit or
        not). All of it on the DBAPI connection: SQLAlchemy's execution machinery
        would cost a tenth of a single-row insert; driver errors are raised as
        SQLAlchemy's.
        """
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
        dbapi.autocommit = True
        try:
            statement = begin
            try:
                dbapi.execute(begin)
                statement = copy_sql
                with dbapi.cursor() as cursor, cursor.copy(copy_sql) as copy:
                    write = copy.write_row
                    for values in paced(rows):
                        write(values)
                statement = "COMMIT"
                dbapi.commit()
            except Exception as exc:
                raise_as_sqlalchemy(conn, dbapi, exc, statement)
        except BaseException:
            with contextlib.suppress(Exception):
                dbapi.rollback()
            raise
        finally:
            try:
                dbapi.autocommit = False
            except Exception:  # a broken connection: never back to the pool
                conn.invalidate()
