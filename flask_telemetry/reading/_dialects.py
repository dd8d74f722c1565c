"""Where SQLite, PostgreSQL and MySQL/MariaDB differ for the read side.

Times: PostgreSQL stores ``timestamptz`` and takes aware datetimes; SQLite and
MySQL/MariaDB store naive UTC (as the writer does). JSON: each database has
its own way to read a key of ``metadata``. Percentiles: PostgreSQL has
``percentile_cont`` as an ordered-set aggregate; on SQLite (which has none)
and MySQL/MariaDB the durations are streamed in order instead.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

#: The percentiles the summary reports, as fractions.
FRACTIONS = (0.5, 0.95, 0.99)


def is_mysql(dialect: sa.Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


def has_percentile_cont(dialect: sa.Dialect) -> bool:
    """Whether the summary asks the database for ``percentile_cont``.

    PostgreSQL only. MariaDB has PERCENTILE_CONT as a window function only:
    it returns a row per request (folded with DISTINCT), and with the counts
    as windows beside it took four times as long as streaming the sorted
    durations on 200,000 rows; alone, on 2,000,000 rows, about as long as
    the whole summary streamed (benchmarks/reading.py).
    """
    return dialect.name == "postgresql"


def bind_time(dialect: sa.Dialect, value: dt.datetime) -> dt.datetime:
    """``value`` (aware) as the column compares it: aware on PostgreSQL,
    naive UTC elsewhere."""
    value = value.astimezone(dt.UTC)
    if dialect.name == "postgresql":
        return value
    return value.replace(tzinfo=None)


def read_time(value: dt.datetime) -> dt.datetime:
    """A stored ``occurred_at`` as an aware UTC datetime."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


#: The metadata keys of ``http_request_end`` the summary reads, with their
#: SQL types (see flask_telemetry.domain.mapping.request_end_metadata).
REQUEST_END_KEYS: dict[str, str] = {
    "status": "integer",
    "duration_ms": "float",
    "exception": "text",
    "slow": "boolean",
    "sample_rate": "float",
}


def request_end_facts(
    dialect: sa.Dialect, table: sa.Table
) -> tuple[list[sa.FromClause], dict[str, sa.ColumnElement[t.Any]]]:
    """FROM items and expressions for the request-end keys of ``metadata``.

    Returns the FROM list to select from (the table, and on PostgreSQL the
    row the JSON is parsed into once) and, per key of
    :data:`REQUEST_END_KEYS`, an expression: ``status`` an integer,
    ``duration_ms`` and ``sample_rate`` floats, ``exception`` and ``slow``
    booleans (whether the key holds a value, whether it is true).
    """
    if dialect.name == "postgresql":
        # json_to_record parses each row's JSON once for every key, where
        # ``->>`` would parse the (json, not jsonb) value once per key.
        # The cast is a no-op on the model's json column, and lets a column
        # changed to jsonb be read too.
        record = (
            sa.func.json_to_record(sa.cast(table.c.metadata, postgresql.JSON))
            .table_valued(
                sa.column("status", sa.Integer),
                sa.column("duration_ms", sa.Float),
                sa.column("exception", sa.Text),
                sa.column("slow", sa.Boolean),
                sa.column("sample_rate", sa.Float),
            )
            .render_derived(name="rq", with_types=True)
        )
        columns = record.c
        return [table.join(record, sa.true())], {
            "status": columns.status,
            "duration_ms": columns.duration_ms,
            "exception": columns.exception.is_not(None),
            "slow": sa.func.coalesce(columns.slow, sa.false()),
            "sample_rate": columns.sample_rate,
        }
    # Parsing the JSON is most of the cost of a summary there, and each
    # extraction parses the whole document again. ``status`` and
    # ``duration_ms`` are in every row; the keys most rows lack are looked
    # for as text first (the writer stores them as ``"key":``), and parsed
    # only in the rows that have them.
    column = _quoted(dialect, table)
    if is_mysql(dialect):

        def get(key: str) -> str:
            return f"JSON_EXTRACT({column}, '$.{key}')"

        def has(key: str) -> str:
            return f"LOCATE('\"{key}\"', {column}) > 0"

        exprs = {
            "status": f"CAST({get('status')} AS SIGNED)",
            "duration_ms": f"({get('duration_ms')} + 0e0)",
            "exception": (
                f"(CASE WHEN {has('exception')} "
                f"THEN {get('exception')} IS NOT NULL ELSE FALSE END)"
            ),
            "slow": (
                f"(CASE WHEN {has('slow')} "
                f"THEN COALESCE(JSON_UNQUOTE({get('slow')}), '') = 'true' "
                "ELSE FALSE END)"
            ),
            "sample_rate": (
                f"(CASE WHEN {has('sample_rate')} THEN {get('sample_rate')} + 0e0 END)"
            ),
        }
    else:  # SQLite: json_extract gives numbers, and 1 for true

        def get(key: str) -> str:
            return f"json_extract({column}, '$.{key}')"

        def has(key: str) -> str:
            return f"instr({column}, '\"{key}\"') > 0"

        exprs = {
            "status": get("status"),
            "duration_ms": f"CAST({get('duration_ms')} AS REAL)",
            "exception": (
                f"(CASE WHEN {has('exception')} "
                f"THEN {get('exception')} IS NOT NULL ELSE 0 END)"
            ),
            "slow": (
                f"(CASE WHEN {has('slow')} "
                f"THEN COALESCE({get('slow')}, 0) = 1 ELSE 0 END)"
            ),
            "sample_rate": (
                f"(CASE WHEN {has('sample_rate')} THEN {get('sample_rate')} END)"
            ),
        }
    types: dict[str, sa.types.TypeEngine[t.Any]] = {
        "status": sa.Integer(),
        "duration_ms": sa.Float(),
        "exception": sa.Boolean(),
        "slow": sa.Boolean(),
        "sample_rate": sa.Float(),
    }
    return [table], {
        key: sa.literal_column(sql, types[key]) for key, sql in exprs.items()
    }


def _quoted(dialect: sa.Dialect, table: sa.Table) -> str:
    preparer = dialect.identifier_preparer
    return f"{preparer.format_table(table)}.{preparer.quote('metadata')}"


def percentile_columns(
    duration: sa.ColumnElement[t.Any],
) -> list[sa.ColumnElement[t.Any]]:
    """PostgreSQL's ``percentile_cont`` of each of :data:`FRACTIONS` over
    ``duration``, as aggregates (to use with GROUP BY route)."""
    return [
        sa.func.percentile_cont(sa.literal_column(repr(fraction))).within_group(
            duration
        )
        for fraction in FRACTIONS
    ]
