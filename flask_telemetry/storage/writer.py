"""The INSERT path: validated rows into ``telemetry_traces``, own transaction."""

from __future__ import annotations

import contextlib
import datetime as dt
import operator
import os
import typing as t

import marshmallow as ma
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from ..exceptions import TelemetryStorageException
from . import event as ev
from .schema import TelemetryEventSchema, columns_schema

#: Failures caused by the content of a row: a batch that hits one is split so
#: that the good rows are still stored. Other driver errors (a missing table,
#: a lost connection) are about the whole batch.
_ROW_ERRORS = (sa_exc.DataError, sa_exc.IntegrityError)
#: Failures of the connection or the server: worth a retry later.
_RETRYABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
#: MySQL/MariaDB errors about a row's content that the drivers raise as
#: OperationalError: CHECK constraint failed (MariaDB 4025, MySQL 3819),
#: column cannot be null (1048), data too long (1406), incorrect value
#: (1366), out of range (1264).
_MYSQL_ROW_ERRNOS = frozenset({4025, 3819, 1048, 1406, 1366, 1264})


_shared = operator.itemgetter(*ev.SHARED_FIELDS)
#: How many verdicts on shared values a writer keeps.
_VERDICTS = 1024


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


def _is_row_error(exc: sa_exc.SQLAlchemyError) -> bool:
    """Whether the content of a row, not the database, made the INSERT fail."""
    if isinstance(exc, _ROW_ERRORS):
        return True
    if not isinstance(exc, sa_exc.StatementError):
        return False
    if not isinstance(exc, sa_exc.DBAPIError):
        return True  # failed while binding parameters, before the database
    # MySQL drivers put the server's error number first; others a message.
    code = (getattr(exc.orig, "args", None) or (None,))[0]
    return isinstance(code, int) and code in _MYSQL_ROW_ERRNOS


class StorageFailure(TelemetryStorageException):
    """A failed INSERT, with what the caller needs to decide what to do next."""

    def __init__(self, message: str, *, retryable: bool, per_row: bool) -> None:
        super().__init__(message)
        #: The database or connection failed; the same rows may succeed later.
        self.retryable = retryable
        #: The rows' content may be at fault; a smaller batch may succeed.
        self.per_row = per_row


class TraceWriter:
    """Validates events with the schema and inserts them in one transaction.

    The connection comes from ``engine_source()`` (the application's engine
    for the bind), checked out for the INSERT only; the application's session
    is never used. Lock and statement timeouts are scoped to the writer's
    transaction on PostgreSQL, set and restored around it on MySQL/MariaDB,
    and the SQLite busy timeout is set and restored the same way.

    The connect timeout: on a bind of telemetry's own, ``connect_timeout_ms``
    is given to new connections unless the bind's options set one. On the
    application's default engine telemetry shares the application's pool
    and leaves its connect options alone: set one there, e.g.
    ``?connect_timeout=2`` in the URL; without one, a server that does not
    answer at all (not one that refuses) holds a sync insert or the writer
    until the operating system gives up. The circuit breaker bounds how many
    times that is paid, and async delivery never makes a request wait for it.

    In a process forked after the writer was made (a pre-fork server that
    loads the app first), the engine's pool is replaced on first use
    (``dispose(close=False)``), so that telemetry never talks on a socket
    the parent still uses.
    """

    def __init__(
        self,
        engine_source: t.Callable[[], sa.Engine],
        table: sa.Table,
        *,
        event_types: t.Iterable[str] = (),
        lock_timeout_ms: int = 500,
        statement_timeout_ms: int = 2000,
        connect_timeout_ms: int | None = None,
        durable_commit: bool = False,
    ) -> None:
        self._engine_source = engine_source
        self._engine: sa.Engine | None = None
        self._shares_connection = False
        self._pid = os.getpid()
        self.table = table
        self.schema = TelemetryEventSchema(event_types=event_types)
        self._columns_schema = columns_schema(ev.PER_ROW_FIELDS)
        self._shared_schema = TelemetryEventSchema(
            event_types=event_types, only=ev.SHARED_FIELDS
        )
        # The schema's own fields for the per-row columns, for one event at a
        # time: calling them directly gives the schema's verdict and messages
        # (no schema-level validator looks at these fields) at half the cost.
        self._row_fields = [(n, self.schema.fields[n]) for n in ev.PER_ROW_FIELDS]
        # The schema's verdict on each combination of shared values seen
        # lately: an application sends few (event type, actor, endpoint...).
        self._verdicts: dict[tuple[t.Any, ...], dict[str, t.Any]] = {}
        self.lock_timeout_ms = lock_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.durable_commit = durable_commit
        self._insert = table.insert()
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

    @property
    def engine(self) -> sa.Engine:
        """The engine the writer inserts through, looked up on first use."""
        if self._pid != os.getpid():
            self.forget_engine()
        if self._engine is None:
            engine = self._engine_source()
            self._shares_connection = engine.dialect.name == "sqlite" and (
                engine.url.database in (None, "", ":memory:")
                or "mode=memory" in str(engine.url)
            )
            self._limit_connects(engine)
            self._engine = engine
        return self._engine

    def _limit_connects(self, engine: sa.Engine) -> None:
        # Only for an engine given to telemetry alone (a bind of its own):
        # new connections get the connect timeout unless the bind's options
        # already set one.
        if self.connect_timeout_ms is None or engine.dialect.name == "sqlite":
            return
        if engine.dialect.driver not in ("psycopg", "psycopg2", "pymysql", "mysqldb"):
            return
        seconds = max(1, -(-int(self.connect_timeout_ms) // 1000))
        # The MySQL drivers' connect timeout covers the TCP connect only, not
        # the server's greeting: a read timeout bounds that (and any read,
        # so it leaves room for the lock and statement timeouts).
        reads = None
        if engine.dialect.driver in ("pymysql", "mysqldb"):
            waits_ms = self.lock_timeout_ms + self.statement_timeout_ms
            reads = max(seconds, -(-waits_ms // 1000) + 1)

        def connect_timeout(
            dialect: t.Any, record: t.Any, cargs: t.Any, cparams: dict[str, t.Any]
        ) -> None:
            cparams.setdefault("connect_timeout", seconds)
            if reads is not None:
                cparams.setdefault("read_timeout", reads)

        if not sa.event.contains(engine, "do_connect", connect_timeout):
            sa.event.listen(engine, "do_connect", connect_timeout)

    def forget_engine(self) -> None:
        """Drop the engine's pooled connections inherited from a parent process.

        They are left open for the parent, which still uses them; new ones are
        made on demand. Done once per child process.
        """
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        engine = self._engine if self._engine is not None else self._engine_source()
        engine.dispose(close=False)

    @property
    def shares_connection(self) -> bool:
        """True for an in-memory SQLite database: one connection for everyone."""
        return self.engine is not None and self._shares_connection

    def connection_busy(self) -> bool:
        """True when the shared connection is inside the application's transaction.

        Only meaningful when :attr:`shares_connection`; writing then would
        commit the application's pending work, so the caller must wait.
        """
        # Looked up on the pool, not checked out: returning a checked-out
        # connection to the pool rolls it back, which would undo the very
        # work this check protects.
        pool = self.engine.pool
        record = getattr(pool, "connection", None)  # StaticPool
        if record is None and hasattr(pool, "_conn"):  # SingletonThreadPool
            current = getattr(pool._conn, "current", None)
            record = current() if current is not None else None
        dbapi = getattr(record, "dbapi_connection", None)
        return bool(getattr(dbapi, "in_transaction", False))

    def validate(
        self, events: t.Sequence[ev.TraceEvent]
    ) -> tuple[list[dict[str, t.Any]], list[tuple[ev.TraceEvent, str]]]:
        """Split events into rows ready to insert and rejected events with reasons.

        Every value goes through the marshmallow schema, but a batch repeats
        most columns (actor, event type, severity, endpoint, address, user
        agent): those are validated once per distinct combination, and only
        the columns that differ per row (request id, metadata, time) column
        by column. The verdict per row is the same as validating rows one by
        one.
        """
        rows = [ev.as_row(e) for e in events]
        errors = self._batch_errors(rows)
        if not errors:
            return self._db_rows(rows), []
        good = [r for i, r in enumerate(rows) if i not in errors]
        bad = [(events[i], str(errors[i])) for i in sorted(errors)]
        return self._db_rows(good), bad

    def _batch_errors(self, rows: list[dict[str, t.Any]]) -> dict[int, t.Any]:
        errors: dict[int, t.Any] = {}
        if len(rows) == 1:  # one event (sync delivery): no columns to gain from
            row = rows[0]
            for name, field in self._row_fields:
                try:
                    field.deserialize(row[name], name, row)
                except ma.ValidationError as exc:
                    errors.setdefault(0, {})[name] = exc.messages
        else:
            columns = {n: [row[n] for row in rows] for n in ev.PER_ROW_FIELDS}
            found_columns: dict[str, t.Any] = self._columns_schema.validate(columns)
            for name, by_row in found_columns.items():
                for index, messages in by_row.items():
                    errors.setdefault(int(index), {})[name] = messages
        groups: dict[tuple[t.Any, ...], list[int]] = {}
        try:
            for index, row in enumerate(rows):
                key = (*_shared(row), type(row["actor_id"]))
                groups.setdefault(key, []).append(index)
        except TypeError:  # an unhashable value: no sharing possible
            full: dict[t.Any, t.Any] = self.schema.validate(rows, many=True)
            return full
        for key, indexes in groups.items():
            shared = self._shared_verdict(key)
            if shared:
                for index in indexes:
                    errors.setdefault(index, {}).update(shared)
        return errors

    def _shared_verdict(self, key: tuple[t.Any, ...]) -> dict[str, t.Any]:
        # ``key`` is the shared values in field order, then the type of
        # actor_id (1, 1.0 and True are equal keys but not equal verdicts).
        verdict = self._verdicts.get(key)
        if verdict is None:
            values = dict(zip(ev.SHARED_FIELDS, key, strict=False))
            verdict = self._shared_schema.validate(values)
            if len(self._verdicts) >= _VERDICTS:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def write(self, event: ev.TraceEvent) -> None:
        """Validate and insert one event; raise TelemetryStorageException."""
        rows, rejected = self.validate([event])
        if rejected:
            why = rejected[0][1]
            raise StorageFailure(
                f"Invalid telemetry event: {why}", retryable=False, per_row=True
            ) from ma.ValidationError(why)
        self.insert(rows)

    def insert(self, rows: list[dict[str, t.Any]]) -> None:
        """INSERT already validated rows with one executemany and commit.

        Raises :class:`StorageFailure` (a TelemetryStorageException) on any
        failure, with the driver's error as its cause.
        """
        if not rows:
            return
        try:
            with self.engine.connect().execution_options(flask_telemetry=True) as conn:
                if conn.dialect.driver == "psycopg":
                    self._insert_psycopg(conn, rows)
                else:
                    with self._timeouts(conn):
                        conn.execute(self._insert, rows)
                        conn.commit()
        except sa_exc.SQLAlchemyError as exc:
            cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
            per_row = _is_row_error(exc)
            raise StorageFailure(
                f"Storing {len(rows)} telemetry event(s) failed: "
                f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}",
                retryable=not per_row
                and (
                    isinstance(exc, _RETRYABLE)
                    or bool(getattr(exc, "connection_invalidated", False))
                ),
                per_row=per_row,
            ) from exc
        except Exception as exc:  # a driver bug must not escape either
            raise StorageFailure(
                f"Storing {len(rows)} telemetry event(s) failed: {exc!r}",
                retryable=False,
                per_row=True,
            ) from exc

    def _db_rows(self, rows: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
        # DATETIME columns (MySQL, MariaDB, SQLite) have no zone: naive UTC.
        # SQLAlchemy's SQLite DATETIME binds the fields and ignores the zone,
        # so a UTC value goes as it is there. (The model's attribute for the
        # ``metadata`` column is ``metadata_``, but a Core insert binds by
        # column key, which is ``metadata``.)
        dialect = self.engine.dialect.name
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

    def _insert_psycopg(
        self, conn: sa.Connection, rows: list[dict[str, t.Any]]
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
            conn.execute(self._insert, rows)
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
    def _timeouts(self, conn: sa.Connection) -> t.Iterator[None]:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            conn.exec_driver_sql(self._pg_settings)
            yield
        elif dialect in ("mysql", "mariadb"):
            yield from self._mysql_timeouts(conn)
        elif dialect == "sqlite" and not self.shares_connection:
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
