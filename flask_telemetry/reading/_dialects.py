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
    "release": "text",
    "db_count": "integer",
    "db_ms": "float",
}

#: What a readable request end holds. A row written by anything may hold
#: any JSON (or, on SQLite, text that is no JSON at all); a row whose
#: ``status`` is not an integer from 100 to 999 or whose ``duration_ms`` is
#: not a number from 0 to MAX_DURATION_MS is *unreadable*: every expression
#: of :func:`request_end_facts` is NULL for it, readers leave it out of
#: their figures and count it. A ``sample_rate`` that is not a number from
#: MIN_SAMPLE_RATE to 1 counts the row once.
MIN_STATUS, MAX_STATUS = 100, 999
MAX_DURATION_MS = 1e12
MIN_SAMPLE_RATE = 1e-6
#: The characters of ``release`` read (a text; anything else is no release).
RELEASE_CHARS = 64
#: ``db_count`` is read when it is an integer from 0 to this, ``db_ms`` a
#: number from 0 to MAX_DURATION_MS; else each is NULL (the row's other
#: figures still count: a request without database figures).
MAX_DB_COUNT = 999_999_999

#: PostgreSQL: the JSON text of a number small enough for ``float8`` both
#: ways (at most 15 + 17 digits and a two-digit exponent), without a sign.
_PG_NUMBER = r"^[0-9]{1,15}(\.[0-9]{1,17})?([eE][-+]?[0-9]{1,2})?$"
_PG_STATUS = r"^[1-9][0-9]{2}$"
_PG_COUNT = r"^[0-9]{1,9}$"
#: Number types of MySQL's and MariaDB's JSON_TYPE.
_MYSQL_NUMBERS = "('INTEGER', 'UNSIGNED INTEGER', 'DOUBLE', 'DECIMAL')"
_MYSQL_INTEGERS = "('INTEGER', 'UNSIGNED INTEGER')"


def request_end_facts(
    dialect: sa.Dialect, table: sa.Table
) -> tuple[list[sa.FromClause], dict[str, sa.ColumnElement[t.Any]]]:
    """FROM items and expressions for the request-end keys of ``metadata``.

    Returns the FROM list to select from (the table, and on PostgreSQL the
    row the JSON is parsed into once) and, per key of
    :data:`REQUEST_END_KEYS`, an expression: ``status`` an integer,
    ``duration_ms`` and ``sample_rate`` floats, ``exception`` and ``slow``
    booleans (whether the key holds a value, whether it is true).

    The types are checked in SQL, never cast blindly: ``status`` and
    ``duration_ms`` are NULL in a row that is not readable (see
    :data:`MAX_DURATION_MS`), so that ``readable`` (both not NULL) keeps the
    rows whose figures count.
    """
    if dialect.name == "postgresql":
        facts = _postgresql_facts(table)
        froms, exprs = facts
    else:
        froms, exprs = [table], _text_facts(dialect, table)
    exprs["readable"] = sa.and_(
        exprs["status"].is_not(None), exprs["duration_ms"].is_not(None)
    )
    # A request end with both database figures readable (the SQLAlchemy
    # integration was on): only those count in the database figures.
    exprs["db"] = sa.and_(
        exprs["readable"], exprs["db_count"].is_not(None), exprs["db_ms"].is_not(None)
    )
    return froms, exprs


def _postgresql_facts(
    table: sa.Table,
) -> tuple[list[sa.FromClause], dict[str, sa.ColumnElement[t.Any]]]:
    # json_to_record parses each row's JSON once for every key, where
    # ``->>`` would parse the (json, not jsonb) value once per key. Each key
    # comes out as json (NULL for JSON null or a missing key), and its text
    # is checked by a regular expression before any cast, so that no value
    # can make the query fail. json_typeof looks at the first token only.
    # The cast is a no-op on the model's json column, and lets a column
    # changed to jsonb be read too.
    meta = sa.cast(table.c.metadata, postgresql.JSON)
    record = (
        sa.func.json_to_record(sa.case((sa.func.json_typeof(meta) == "object", meta)))
        .table_valued(
            sa.column("status", postgresql.JSON),
            sa.column("duration_ms", postgresql.JSON),
            sa.column("exception", postgresql.JSON),
            sa.column("slow", postgresql.JSON),
            sa.column("sample_rate", postgresql.JSON),
            sa.column("release", postgresql.JSON),
            sa.column("db_count", postgresql.JSON),
            sa.column("db_ms", postgresql.JSON),
        )
        .render_derived(name="rq", with_types=True)
    )
    c = record.c

    def text(column: sa.ColumnElement[t.Any]) -> sa.ColumnElement[str]:
        return sa.cast(column, sa.Text)

    def number(column: sa.ColumnElement[t.Any], low: float, high: float) -> t.Any:
        value = sa.case(
            (text(column).regexp_match(_PG_NUMBER), sa.cast(text(column), sa.Float))
        )
        return sa.case((value.between(low, high), value))

    status = sa.case(
        (text(c.status).regexp_match(_PG_STATUS), sa.cast(text(c.status), sa.Integer))
    )
    return [table.join(record, sa.true())], {
        "status": status,
        "duration_ms": number(c.duration_ms, 0.0, MAX_DURATION_MS),
        "exception": c.exception.is_not(None),
        "slow": sa.func.coalesce(text(c.slow) == "true", sa.false()),
        "sample_rate": number(c.sample_rate, MIN_SAMPLE_RATE, 1.0),
        "release": sa.case(
            (
                sa.func.json_typeof(c.release) == "string",
                sa.func.substr(c.release.op("#>>")(sa.text("'{}'")), 1, RELEASE_CHARS),
            )
        ),
        "db_count": sa.case(
            (
                text(c.db_count).regexp_match(_PG_COUNT),
                sa.cast(text(c.db_count), sa.Integer),
            )
        ),
        "db_ms": number(c.db_ms, 0.0, MAX_DURATION_MS),
    }


def _text_facts(
    dialect: sa.Dialect, table: sa.Table
) -> dict[str, sa.ColumnElement[t.Any]]:
    # Parsing the JSON is most of the cost of a summary there, and each
    # extraction parses the whole document again. ``status`` and
    # ``duration_ms`` are in every row; the keys most rows lack are looked
    # for as text first (the writer stores them as ``"key":``), and parsed
    # only in the rows that have them.
    column = _quoted(dialect, table)
    if is_mysql(dialect):
        # The column is JSON (checked by the server): JSON_TYPE tells the
        # type of a value, and a number is compared as a double before it
        # is converted.

        def get(key: str) -> str:
            return f"JSON_EXTRACT({column}, '$.{key}')"

        def has(key: str) -> str:
            return f"LOCATE('\"{key}\"', {column}) > 0"

        def number(key: str, low: float, high: float) -> str:
            return (
                f"(CASE WHEN JSON_TYPE({get(key)}) IN {_MYSQL_NUMBERS} "
                f"AND ({get(key)} + 0e0) BETWEEN {low!r} AND {high!r} "
                f"THEN {get(key)} + 0e0 END)"
            )

        exprs = {
            "status": (
                f"(CASE WHEN JSON_TYPE({get('status')}) IN {_MYSQL_INTEGERS} "
                f"AND ({get('status')} + 0e0) BETWEEN {MIN_STATUS} AND {MAX_STATUS} "
                f"THEN CAST({get('status')} AS SIGNED) END)"
            ),
            "duration_ms": number("duration_ms", 0.0, MAX_DURATION_MS),
            "exception": (
                f"(CASE WHEN {has('exception')} "
                f"THEN COALESCE(JSON_TYPE({get('exception')}) <> 'NULL', FALSE) "
                "ELSE FALSE END)"
            ),
            "slow": (
                f"(CASE WHEN {has('slow')} "
                f"THEN COALESCE(JSON_TYPE({get('slow')}) = 'BOOLEAN' "
                f"AND {get('slow')} = TRUE, FALSE) "
                "ELSE FALSE END)"
            ),
            "sample_rate": (
                f"(CASE WHEN {has('sample_rate')} "
                f"THEN {number('sample_rate', MIN_SAMPLE_RATE, 1.0)} END)"
            ),
            "release": (
                f"(CASE WHEN {has('release')} AND JSON_TYPE({get('release')}) = "
                f"'STRING' THEN LEFT(JSON_UNQUOTE({get('release')}), "
                f"{RELEASE_CHARS}) END)"
            ),
            "db_count": (
                f"(CASE WHEN {has('db_count')} "
                f"AND JSON_TYPE({get('db_count')}) IN {_MYSQL_INTEGERS} "
                f"AND ({get('db_count')} + 0e0) BETWEEN 0 AND {MAX_DB_COUNT} "
                f"THEN CAST({get('db_count')} AS SIGNED) END)"
            ),
            "db_ms": (
                f"(CASE WHEN {has('db_ms')} "
                f"THEN {number('db_ms', 0.0, MAX_DURATION_MS)} END)"
            ),
        }
    else:  # SQLite: the column is text, JSON or not; true reads as 1
        valid = f"json_valid({column})"

        def get(key: str) -> str:
            return f"json_extract({column}, '$.{key}')"

        def has(key: str) -> str:
            return f"instr({column}, '\"{key}\"') > 0"

        def typed(key: str, low: float, high: float, types: str) -> str:
            return (
                f"(CASE WHEN {valid} THEN (CASE WHEN json_type({column}, '$.{key}') "
                f"IN {types} AND {get(key)} BETWEEN {low!r} AND {high!r} "
                f"THEN {get(key)} END) END)"
            )

        exprs = {
            "status": typed("status", MIN_STATUS, MAX_STATUS, "('integer')"),
            "duration_ms": (
                f"CAST({typed('duration_ms', 0.0, MAX_DURATION_MS, _SQLITE_NUMBERS)}"
                " AS REAL)"
            ),
            "exception": (
                f"(CASE WHEN {has('exception')} AND {valid} "
                f"THEN {get('exception')} IS NOT NULL ELSE 0 END)"
            ),
            "slow": (
                f"(CASE WHEN {has('slow')} AND {valid} "
                f"THEN COALESCE(json_type({column}, '$.slow') = 'true', 0) "
                "ELSE 0 END)"
            ),
            "sample_rate": (
                f"(CASE WHEN {has('sample_rate')} THEN "
                f"{typed('sample_rate', MIN_SAMPLE_RATE, 1.0, _SQLITE_NUMBERS)} END)"
            ),
            "release": (
                f"(CASE WHEN {has('release')} AND {valid} AND json_type({column}, "
                f"'$.release') = 'text' THEN substr({get('release')}, 1, "
                f"{RELEASE_CHARS}) END)"
            ),
            "db_count": (
                f"(CASE WHEN {has('db_count')} THEN "
                f"{typed('db_count', 0, MAX_DB_COUNT, _SQLITE_INTEGERS)} END)"
            ),
            "db_ms": (
                f"(CASE WHEN {has('db_ms')} THEN CAST("
                f"{typed('db_ms', 0.0, MAX_DURATION_MS, _SQLITE_NUMBERS)} AS REAL) END)"
            ),
        }
    types: dict[str, sa.types.TypeEngine[t.Any]] = {
        "status": sa.Integer(),
        "duration_ms": sa.Float(),
        "exception": sa.Boolean(),
        "slow": sa.Boolean(),
        "sample_rate": sa.Float(),
        "release": sa.String(),
        "db_count": sa.Integer(),
        "db_ms": sa.Float(),
    }
    return {key: sa.literal_column(sql, types[key]) for key, sql in exprs.items()}


_SQLITE_NUMBERS = "('integer', 'real')"
_SQLITE_INTEGERS = "('integer')"


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
