"""The INSERT path: validated rows into ``telemetry_traces``, own transaction."""

from __future__ import annotations

import copy
import operator
import typing as t

import marshmallow as ma
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from ..exceptions import TelemetryStorageException
from . import dialects
from . import row as ev
from .pacing import paced
from .schema import TelemetryEventSchema

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


#: Where each value is in :data:`~.row.Values`.
_SHARED = operator.itemgetter(*(ev.FIELDS.index(n) for n in ev.SHARED_FIELDS))
_ACTOR_ID = ev.FIELDS.index("actor_id")
_REQUEST_ID = ev.FIELDS.index("request_id")
_METADATA = ev.FIELDS.index("metadata")
_OCCURRED_AT = ev.FIELDS.index("occurred_at")
#: The values checked row by row, by field name and position, in the order of
#: ``TraceWriter._per_row``.
_PER_ROW = (
    ("request_id", _REQUEST_ID),
    ("metadata", _METADATA),
    ("occurred_at", _OCCURRED_AT),
)
#: How many verdicts on shared values a writer keeps.
_VERDICTS = 1024


def _plain(field: ma.fields.Field[t.Any]) -> bool:
    """Whether ``field`` has no load hooks of its own (marshmallow 4's
    field-level ``pre_load`` and ``post_load``)."""
    return not getattr(field, "pre_load", None) and not getattr(
        field, "post_load", None
    )


def _verdict_by_length(field: ma.fields.Field[t.Any]) -> bool:
    """Whether ``field`` gives every exact str of one length the same verdict.

    True for marshmallow's own ``String`` (which returns an exact str as it
    is) whose only validators are ``Length`` and that has no field-level
    load hooks: each request id is usually new, and a batch then pays for
    one field call per distinct length, not per row. Any other field,
    validator (a pattern, say) or hook is asked about every id.
    """
    return (
        type(field) is ma.fields.String
        and _plain(field)
        and all(type(check) is ma.validate.Length for check in field.validators)
    )


def _deserializer(field: ma.fields.Field[t.Any]) -> t.Callable[[t.Any], t.Any]:
    """``field.deserialize``, or what it comes to for a value that is not
    None when nothing else would run: the field's own ``_deserialize``.

    For a field with no validators and no load hooks, ``deserialize`` of a
    value that is not None (nor marshmallow's ``missing``) only calls
    ``_deserialize``; its other calls cost more than that one does for a
    timestamp. None and ``missing`` still go through ``deserialize``, with
    its verdicts and messages.
    """
    full = field.deserialize
    if field.validators or not _plain(field):
        return full
    inner = field._deserialize

    def deserialize(value: t.Any) -> t.Any:
        if value is None or value is ma.missing:
            return full(value)
        return inner(value, None, None)

    return deserialize


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


#: Added to the message of a failure whose cause is a missing table.
MISSING_TABLE_FIX = " (run `flask db upgrade`, or `flask telemetry check`)"
#: PostgreSQL's SQLSTATE and MySQL's error number for a table that is not there.
_NO_TABLE_SQLSTATE = "42P01"
_NO_TABLE_ERRNO = 1146


def _missing_table(cause: BaseException | None) -> bool:
    """Whether a driver's error says that the table does not exist."""
    if getattr(cause, "sqlstate", None) == _NO_TABLE_SQLSTATE:  # psycopg
        return True
    code = (getattr(cause, "args", None) or (None,))[0]
    if code == _NO_TABLE_ERRNO:  # MySQL drivers
        return True
    return str(cause).startswith("no such table")  # sqlite3


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
    is never used. What differs per database (timeouts scoped to telemetry's
    transaction, the psycopg path, time zones) is in :mod:`.dialects`.

    The connect timeout: on a bind of telemetry's own, ``connect_timeout_ms``
    is given to new connections unless the bind's options set one. On the
    application's default engine telemetry shares the application's pool
    and leaves its connect options alone: set one there, e.g.
    ``?connect_timeout=2`` in the URL; without one, a server that does not
    answer at all (not one that refuses) holds a sync insert or the writer
    until the operating system gives up. The circuit breaker bounds how many
    times that is paid, and async delivery never makes a request wait for it.

    In a process forked after the writer was made (a pre-fork server that
    loads the app first), the delivery's fork guard calls :meth:`after_fork`,
    which replaces the engine's pool (``dispose(close=False)``) so that
    telemetry never talks on a socket the parent still uses.
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
        self.table = table
        self.schema = TelemetryEventSchema(event_types=event_types)
        self._shared_schema = TelemetryEventSchema(
            event_types=event_types, only=ev.SHARED_FIELDS
        )
        # The schema's own fields for the per-row columns, called directly:
        # the schema's verdict and messages (no schema-level validator looks
        # at these fields) at a fraction of the cost of a load. The metadata
        # field is the schema's, loading the JSON text that is then bound.
        fields = self.schema.fields
        as_text = copy.copy(fields["metadata"])
        as_text.as_text = True  # type: ignore[attr-defined]
        #: The request id field's verdict on an exact str depends on its
        #: length alone (see :func:`_verdict_by_length`): kept per length.
        self._ids_by_length = _verdict_by_length(fields["request_id"])
        self._per_row = (
            fields["request_id"].deserialize,
            _deserializer(as_text),
            _deserializer(fields["occurred_at"]),
        )
        self._convert: dialects.Convert | None = None
        # The schema's verdict on each combination of shared values seen
        # lately: an application sends few (event type, actor, endpoint...).
        self._verdicts: dict[tuple[t.Any, ...], dict[str, t.Any]] = {}
        self.lock_timeout_ms = lock_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        self._dialects = dialects.Dialects(
            lock_timeout_ms=lock_timeout_ms,
            statement_timeout_ms=statement_timeout_ms,
            durable_commit=durable_commit,
        )

    @property
    def engine(self) -> sa.Engine:
        """The engine the writer inserts through, looked up on first use."""
        if self._engine is None:
            engine = self._engine_source()
            self._shares_connection = dialects.is_shared_memory(engine)
            # Only for an engine given to telemetry alone (a bind of its own).
            if self.connect_timeout_ms is not None:
                dialects.limit_connects(
                    engine,
                    self.connect_timeout_ms,
                    read_budget_ms=self.lock_timeout_ms + self.statement_timeout_ms,
                )
            self._engine = engine
        return self._engine

    def after_fork(self) -> None:
        """In a child process: drop the pooled connections inherited from the
        parent, leaving them open for the parent, which still uses them; new
        ones are made on demand."""
        if self._engine is not None:
            self._engine.dispose(close=False)

    @property
    def shares_connection(self) -> bool:
        """True for an in-memory SQLite database: one connection for everyone."""
        return self.engine is not None and self._shares_connection

    def connection_busy(self) -> bool:
        """True when the shared connection is inside the application's transaction.

        Only meaningful when :attr:`shares_connection`; writing then would
        commit the application's pending work, so the caller must wait.
        """
        return dialects.in_transaction(self.engine)

    def validate(
        self, events: t.Sequence[ev.TraceEvent | ev.Values]
    ) -> tuple[list[t.Any], list[tuple[ev.TraceEvent, str]]]:
        """Split events into rows ready to insert and rejected events with reasons.

        ``events`` are :class:`~.row.TraceEvent` objects or their values in
        column order (:data:`~.row.Values`, what the background writer
        builds). Every value goes through the marshmallow schema's fields,
        but a batch repeats most columns (actor, event type, severity,
        endpoint, address, user agent): those are validated once per
        distinct combination, request ids once per distinct id, and the
        metadata and time of every row one by one. The verdict per row is
        the schema's.

        The rows come back in the form the insert binds (see
        :mod:`.dialects`): metadata as its JSON text, encoded once by its
        validation, and ``occurred_at`` as the column type would bind it.
        """
        return self._validate(events, self._converter())

    def model_rows(
        self, events: t.Sequence[ev.TraceEvent | ev.Values]
    ) -> tuple[list[dict[str, t.Any]], list[tuple[ev.TraceEvent, str]]]:
        """Like :meth:`validate`, with the rows as dicts keyed by column for
        the model's own INSERT (``flask telemetry check`` probes with it)."""
        return self._validate(events, dialects.converter(self.engine.dialect, True))

    def _validate(
        self, events: t.Sequence[ev.TraceEvent | ev.Values], convert: dialects.Convert
    ) -> tuple[list[t.Any], list[tuple[ev.TraceEvent, str]]]:
        # A valid row runs straight through; a row that fails a check is
        # handed to _rejected, which finishes its verdict.
        request_id, metadata, occurred_at = self._per_row
        verdicts = self._verdicts
        good: list[t.Any] = []
        bad: list[tuple[ev.TraceEvent, str]] = []
        # Request ids (or their lengths) the field accepted in this batch.
        valid_ids: set[str | int | None] = set()
        by_length = self._ids_by_length
        for event in paced(events):  # the application's threads run between
            values = event if type(event) is tuple else ev.values(event)  # type: ignore[arg-type]
            key = (*_SHARED(values), type(values[_ACTOR_ID]))
            try:
                shared = verdicts[key]
            except (KeyError, TypeError):  # not seen lately, or unhashable
                shared = self._shared_verdict(key, values)
            rid = values[_REQUEST_ID]
            # The verdict on an exact str (or None) is kept for the batch:
            # per length where the field allows, or per id.
            kept = rid is None or type(rid) is str
            mark = len(rid) if by_length and type(rid) is str else rid
            try:
                if not (kept and mark in valid_ids):
                    request_id(rid)
                    if kept:
                        valid_ids.add(mark)
            except ma.ValidationError as exc:
                bad.append(self._rejected(event, values, shared, "request_id", exc))
                continue
            try:
                text = metadata(values[_METADATA])
            except ma.ValidationError as exc:
                bad.append(self._rejected(event, values, shared, "metadata", exc))
                continue
            try:
                when = occurred_at(values[_OCCURRED_AT])
            except ma.ValidationError as exc:
                bad.append(self._rejected(event, values, shared, "occurred_at", exc))
                continue
            if shared:
                bad.append(self._rejected(event, values, shared))
            else:
                good.append(convert(values, text, when))
        return good, bad

    def _rejected(
        self,
        event: ev.TraceEvent | ev.Values,
        values: ev.Values,
        shared: dict[str, t.Any],
        failed: str | None = None,
        exc: ma.ValidationError | None = None,
    ) -> tuple[ev.TraceEvent, str]:
        """A rejected row as its event and the reason.

        The reason is the row's errors: those of the shared values
        (``shared``, their verdict), then those of the request id, the
        metadata and the time, in that order. ``failed`` names the one of
        these three whose check raised ``exc``: the checks before it passed,
        the ones after it run here. Without ``failed`` all three passed.
        """
        errors = dict(shared)
        checks: tuple[t.Callable[[t.Any], t.Any], ...] = self._per_row
        after = False
        for (name, index), check in zip(_PER_ROW, checks, strict=True):
            if after:
                try:
                    check(values[index])
                except ma.ValidationError as later:
                    errors[name] = later.messages
            elif name == failed:
                errors[name] = t.cast(ma.ValidationError, exc).messages
                after = True
        if type(event) is tuple:
            event = ev.from_values(event)
        return t.cast(ev.TraceEvent, event), str(errors)

    def _shared_verdict(
        self, key: tuple[t.Any, ...], values: ev.Values
    ) -> dict[str, t.Any]:
        # ``key`` is the shared values in field order, then the type of
        # actor_id (1, 1.0 and True are equal keys but not equal verdicts).
        verdict: dict[str, t.Any] = self._shared_schema.validate(
            dict(zip(ev.SHARED_FIELDS, _SHARED(values), strict=True))
        )
        try:
            hash(key)
        except TypeError:  # a value that cannot be a key: validated each time
            return verdict
        if len(self._verdicts) >= _VERDICTS:
            self._verdicts.clear()
        self._verdicts[key] = verdict
        return verdict

    def _converter(self) -> dialects.Convert:
        convert = self._convert
        if convert is None:
            convert = self._convert = dialects.converter(self.engine.dialect)
        return convert

    def insert(self, rows: list[t.Any]) -> None:
        """INSERT rows from :meth:`validate` in one statement and commit.

        Raises :class:`StorageFailure` (a TelemetryStorageException) on any
        failure, with the driver's error as its cause.
        """
        if not rows:
            return
        try:
            # Marked, so that the slow-query integration never records
            # telemetry's own statements.
            with self.engine.connect().execution_options(flask_telemetry=True) as conn:
                self._dialects.insert(
                    conn, self.table, rows, shared=self._shares_connection
                )
        except sa_exc.SQLAlchemyError as exc:
            cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
            per_row = _is_row_error(exc)
            raise StorageFailure(
                f"Storing {len(rows)} telemetry event(s) failed: "
                f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}"
                + (MISSING_TABLE_FIX if _missing_table(cause) else ""),
                retryable=not per_row
                and (
                    isinstance(exc, _RETRYABLE)
                    or bool(getattr(exc, "connection_invalidated", False))
                ),
                per_row=per_row,
            ) from exc
        except Exception as exc:  # a driver bug must not escape either
            raise StorageFailure(
                f"Storing {len(rows)} telemetry event(s) failed: {exc!r}"
                + (MISSING_TABLE_FIX if _missing_table(exc) else ""),
                retryable=False,
                per_row=True,
            ) from exc
