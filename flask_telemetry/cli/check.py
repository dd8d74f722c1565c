"""``flask telemetry check | config``: check the table, show the settings."""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import click
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.dialects import mysql

from .._config import DEFAULTS, ConfigVars
from ..storage import row as ev
from ..storage.model import TABLE_NAME
from ..storage.row import TraceEvent
from ..storage.vocabulary import EventType, Severity
from ..storage.writer import TraceWriter
from .check_pg import check_partitions, check_pooler
from .common import state


class _Report:
    """Lines of a check, printed as they come; failures make the command fail."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def ok(self, message: str) -> None:
        click.echo(f"  ok    {message}")

    def warn(self, message: str) -> None:
        click.echo(f"  warn  {message}")

    def fail(self, message: str) -> None:
        click.echo(f"  FAIL  {message}", err=True)
        self.failures.append(message)


@click.command("check")
@with_appcontext
def check_command() -> None:
    """Check that telemetry can store events in this app's database.

    Connects to the configured bind, checks that ``telemetry_traces`` exists
    with the model's columns and types, and inserts a probe row in a
    transaction that is rolled back. Exits with status 1 and says what is
    wrong when any of it fails.
    """
    app = state()
    settings = app.settings
    table: sa.Table = app.model.__table__
    engine = app.engine()
    where = engine.url.render_as_string(hide_password=True)
    bind = "the default bind" if settings.BIND_KEY is None else settings.BIND_KEY
    click.echo(f"Checking {TABLE_NAME} on {bind} ({where})")
    if not settings.ENABLED:
        click.echo(f"  note  {ConfigVars.ENABLED} is False: nothing is recorded.")
    report = _Report()
    try:
        with engine.connect() as conn:
            report.ok(f"connected ({engine.dialect.name})")
            if conn.dialect.name == "postgresql":
                check_pooler(conn, report)
            if _check_table(conn, table, report):
                conn.rollback()  # end the transaction the inspection began
                _probe(conn, table, settings.STATEMENT_TIMEOUT_MS, report)
                if conn.dialect.name == "postgresql":
                    check_partitions(conn, table, settings.STATEMENT_TIMEOUT_MS, report)
    except sa_exc.SQLAlchemyError as exc:
        cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        report.fail(f"cannot use the database: {type(cause).__name__}: {first}")
    if report.failures:
        raise click.ClickException(
            f"telemetry check failed ({len(report.failures)} problem(s)): "
            f"telemetry events would not be stored on {bind}."
        )
    click.echo("telemetry check passed.")


def _check_table(conn: sa.Connection, table: sa.Table, report: _Report) -> bool:
    """Compare the table in the database with the model; False if it is unusable."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(TABLE_NAME, schema=table.schema):
        report.fail(
            f"table {TABLE_NAME} does not exist: create it with Flask-Migrate "
            "(`flask db migrate` then `flask db upgrade`) or db.create_all()."
        )
        return False
    report.ok(f"table {TABLE_NAME} exists")
    reflected = {c["name"]: c for c in inspector.get_columns(TABLE_NAME, table.schema)}
    dialect = conn.dialect
    problems = 0
    for column in table.columns:
        found = reflected.get(column.name)
        if found is None:
            report.fail(f"column {column.name} is missing")
            problems += 1
            continue
        expected = column.type.dialect_impl(dialect)
        if _shape(expected, dialect) != _shape(found["type"], dialect):
            report.fail(
                f"column {column.name} is {_shown(found['type'], dialect)}, "
                f"the model expects {_shown(expected, dialect)}"
            )
            problems += 1
        elif not column.primary_key and bool(found["nullable"]) != column.nullable:
            want = "NULL" if column.nullable else "NOT NULL"
            report.fail(f"column {column.name} should be {want}")
            problems += 1
    if not problems:
        report.ok(f"{len(table.columns)} columns match the model")
    for name in sorted(set(reflected) - set(table.columns.keys())):
        report.warn(f"column {name} is not in the model (telemetry leaves it alone)")
    indexed = {tuple(i["column_names"]) for i in inspector.get_indexes(TABLE_NAME)}
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        if tuple(c.name for c in index.columns) not in indexed:
            report.warn(f"index {index.name} is missing (slower lookups, no failure)")
    return not problems


def _shape(type_: sa.types.TypeEngine[t.Any], dialect: sa.Dialect) -> tuple[t.Any, ...]:
    """What matters of a column type for storing telemetry rows."""
    if getattr(dialect, "is_mariadb", False) and isinstance(
        type_, sa.JSON | mysql.LONGTEXT
    ):
        # MariaDB's JSON is LONGTEXT with a json_valid() CHECK, and reflects
        # as LONGTEXT; the probe insert shows whether JSON goes through.
        return ("json",)
    if isinstance(type_, sa.BigInteger):
        return ("bigint",)
    if isinstance(type_, sa.SmallInteger):
        return ("smallint",)
    if isinstance(type_, sa.Integer):
        return ("integer",)
    if isinstance(type_, sa.JSON):  # json and jsonb alike
        return ("json",)
    if isinstance(type_, sa.Text) or (
        isinstance(type_, sa.String) and type_.length is None
    ):
        return ("text",)
    if isinstance(type_, sa.String):
        return ("varchar", type_.length)
    if isinstance(type_, sa.DateTime):
        if dialect.name == "postgresql":
            return ("datetime", bool(type_.timezone))
        if dialect.name in ("mysql", "mariadb"):
            return ("datetime", getattr(type_, "fsp", None) or 0)
        return ("datetime",)
    return (type(type_).__name__.lower(),)


def _shown(type_: sa.types.TypeEngine[t.Any], dialect: sa.Dialect) -> str:
    try:
        return str(type_.compile(dialect=dialect))
    except sa_exc.CompileError:
        return type(type_).__name__


def _probe(
    conn: sa.Connection, table: sa.Table, statement_timeout_ms: int, report: _Report
) -> None:
    """Insert a probe row (every column at its widest) and roll it back."""
    now = dt.datetime.now(dt.UTC)
    probe = TraceEvent(
        actor_type="system",
        actor_id=2**63 - 1,
        event_type=EventType.SYSTEM_EXCEPTION.value,
        severity=Severity.DEBUG.value,
        request_id="r" * ev.length("request_id"),
        route_name="e" * ev.length("route_name"),
        ip_address="f" * ev.length("ip_address"),
        user_agent="u" * ev.length("user_agent"),
        metadata={"probe": "flask telemetry check", "n": [1, 2.5, None, True]},
        occurred_at=now,
    )
    # The writer's own validation and conversion, without its commit.
    writer = TraceWriter(lambda: conn.engine, table)
    rows, rejected = writer.model_rows([probe])
    if rejected:
        report.fail(f"the probe row does not pass the schema: {rejected[0][1]}")
        return
    with conn.begin() as trans:
        try:
            if conn.dialect.name == "postgresql":
                timeout = int(statement_timeout_ms)
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {timeout}")
            result = conn.execute(table.insert(), rows[0])
            key: t.Any = result.inserted_primary_key
            stored = conn.execute(
                sa.select(table.c.occurred_at, table.c.metadata).where(
                    table.c.id == key[0]
                )
            ).one()
        finally:
            trans.rollback()
    occurred, sent = stored.occurred_at, rows[0]["occurred_at"]
    if occurred.tzinfo is None or sent.tzinfo is None:  # compare as stored
        occurred, sent = occurred.replace(tzinfo=None), sent.replace(tzinfo=None)
    if occurred != sent:  # aware: the same instant in any session time zone
        report.fail(
            f"occurred_at came back as {occurred.isoformat()} for "
            f"{now.isoformat()}: the column loses precision"
        )
    elif stored.metadata != probe.metadata:
        report.fail(f"metadata came back as {stored.metadata!r}")
    else:
        report.ok("probe insert works (rolled back)")


@click.command("config")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
def config_command(as_json: bool) -> None:
    """Print the effective TELEMETRY_* settings of this app."""
    config = current_app.config
    keys = list(DEFAULTS) + sorted(
        k for k in config if k.startswith("TELEMETRY_") and k not in DEFAULTS
    )
    if as_json:
        click.echo(json.dumps({k: config.get(k) for k in keys}, indent=2, default=str))
        return
    width = max(len(k) for k in keys)
    for key in keys:
        value = config.get(key)
        note = "" if key in DEFAULTS and value == DEFAULTS[key] else "  # changed"
        if key not in DEFAULTS:
            note = "  # not a flask_telemetry setting"
        click.echo(f"{key:<{width}} = {value!r}{note}")
    delivery = type(state().delivery).__name__
    click.echo(f"# delivery in use: {delivery}")


#: The commands added to the ``flask telemetry`` group.
COMMANDS = (check_command, config_command)

__all__ = ["COMMANDS"]
