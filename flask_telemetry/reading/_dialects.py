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

#: The percentiles the summary reports, as fractions.
FRACTIONS = (0.5, 0.95, 0.99)


def is_mysql(dialect: sa.Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


def has_percentile_cont(dialect: sa.Dialect) -> bool:
    """Whether the summary asks the database for ``percentile_cont``.

    PostgreSQL only. MariaDB has PERCENTILE_CONT as a window function only,
    which evaluates the window for every row: on 200,000 rows it took four
    times as long as streaming the sorted durations (benchmarks/reading.py).
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
        record = (
            sa.func.json_to_record(table.c.metadata)
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
    column = _quoted(dialect, table)
    if is_mysql(dialect):

        def get(key: str) -> str:
            return f"JSON_EXTRACT({column}, '$.{key}')"

        exprs = {
            "status": f"CAST({get('status')} AS SIGNED)",
            "duration_ms": f"({get('duration_ms')} + 0e0)",
            "exception": f"({get('exception')} IS NOT NULL)",
            "slow": f"(COALESCE(JSON_UNQUOTE({get('slow')}), '') = 'true')",
            "sample_rate": f"({get('sample_rate')} + 0e0)",
        }
    else:  # SQLite: json_extract gives numbers, and 1 for true

        def get(key: str) -> str:
            return f"json_extract({column}, '$.{key}')"

        exprs = {
            "status": get("status"),
            "duration_ms": f"CAST({get('duration_ms')} AS REAL)",
            "exception": f"({get('exception')} IS NOT NULL)",
            "slow": f"(COALESCE({get('slow')}, 0) = 1)",
            "sample_rate": get("sample_rate"),
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
