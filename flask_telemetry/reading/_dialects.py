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

from ..storage import figures

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


#: The metadata keys of ``http_request_end`` the readers read, with their
#: SQL types: the figures of :data:`~..storage.figures.FIGURES` that have a
#: check.
_SQL_TYPES: dict[str, str] = {
    "integer": "integer",
    "number": "float",
    "text": "text",
    "flag": "boolean",
    "present": "boolean",
}
REQUEST_END_KEYS: dict[str, str] = {
    f.name: _SQL_TYPES[t.cast(str, f.check)] for f in figures.READ
}

#: What a readable request end holds. A row written by anything may hold
#: any JSON (or, on SQLite, text that is no JSON at all); a row whose
#: required figures (``status``, an integer from 100 to 999, and
#: ``duration_ms``, a number from 0 to MAX_DURATION_MS) are not read is
#: *unreadable*: every expression of :func:`request_end_facts` is NULL for
#: it, readers leave it out of their figures and count it. Any other figure
#: that fails its check is NULL (``slow`` and ``exception`` false): a
#: ``sample_rate`` that is not a number from MIN_SAMPLE_RATE to 1 counts
#: the row once, ``db_count`` and ``db_ms`` (read together) a request
#: without database figures.
MIN_STATUS = int(figures.BY_NAME["status"].low)
MAX_STATUS = int(figures.BY_NAME["status"].high)
MAX_DURATION_MS = figures.MAX_DURATION_MS
MIN_SAMPLE_RATE = figures.BY_NAME["sample_rate"].low
#: The characters of ``release`` read (a text; anything else is no release).
RELEASE_CHARS = int(figures.BY_NAME["release"].high)
MAX_DB_COUNT = int(figures.BY_NAME["db_count"].high)

#: PostgreSQL: the JSON text of a number small enough for ``float8`` both
#: ways (at most 15 + 17 digits and a two-digit exponent), without a sign.
_PG_NUMBER = r"^[0-9]{1,15}(\.[0-9]{1,17})?([eE][-+]?[0-9]{1,2})?$"
#: Number types of MySQL's and MariaDB's JSON_TYPE.
_MYSQL_NUMBERS = "('INTEGER', 'UNSIGNED INTEGER', 'DOUBLE', 'DECIMAL')"
_MYSQL_INTEGERS = "('INTEGER', 'UNSIGNED INTEGER')"
_SQLITE_NUMBERS = "('integer', 'real')"
_SQLITE_INTEGERS = "('integer')"


def request_end_facts(
    dialect: sa.Dialect, table: sa.Table
) -> tuple[list[sa.FromClause], dict[str, sa.ColumnElement[t.Any]]]:
    """FROM items and expressions for the request-end keys of ``metadata``.

    Returns the FROM list to select from (the table, and on PostgreSQL the
    row the JSON is parsed into once) and, per figure read
    (:data:`REQUEST_END_KEYS`), an expression of its check (see
    :data:`~..storage.figures.Check`): ``integer`` an integer, ``number`` a
    float, ``text`` a string, ``flag`` and ``present`` booleans. Then
    ``readable`` (the required figures are all read) and one boolean per
    group of figures (``db``: readable, and every figure of the group read).

    The types are checked in SQL, never cast blindly: no value can make the
    query fail, and the required figures are NULL in a row that is not
    readable, so that ``readable`` keeps the rows whose figures count.
    """
    if dialect.name == "postgresql":
        froms, exprs = _postgresql_facts(table)
    else:
        froms, exprs = [table], _text_facts(dialect, table)
    exprs["readable"] = sa.and_(
        *(exprs[f.name].is_not(None) for f in figures.READ if f.required)
    )
    groups: dict[str, list[str]] = {}
    for figure in figures.READ:
        if figure.group is not None:
            groups.setdefault(figure.group, []).append(figure.name)
    for group, names in groups.items():
        exprs[group] = sa.and_(
            exprs["readable"], *(exprs[name].is_not(None) for name in names)
        )
    return froms, exprs


def read_fact(metadata: object, name: str) -> t.Any:
    """The request-end figure ``name`` of a stored metadata (any value),
    read in Python as :func:`request_end_facts` reads it in SQL (see
    :func:`~..storage.figures.read`): for the pages, which have the rows."""
    return figures.read_key(metadata, name)


def _pg_integer(figure: figures.Figure) -> str:
    """A regular expression for the JSON text of an integer from the
    figure's low to its high, when those are 10^(n-1) to 10^n - 1 or 0 to
    10^n - 1 (else the range is checked after the cast as well)."""
    digits = len(str(int(figure.high)))
    if figure.low == 10 ** (digits - 1) and figure.high == 10**digits - 1:
        return f"^[1-9][0-9]{{{digits - 1}}}$"
    return f"^[0-9]{{1,{digits}}}$"


def _pg_ranged(figure: figures.Figure) -> bool:
    """Whether :func:`_pg_integer`'s expression leaves the range to check."""
    digits = len(str(int(figure.high)))
    return figure.high != 10**digits - 1 or figure.low not in (0, 10 ** (digits - 1))


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
        .table_valued(*(sa.column(f.name, postgresql.JSON) for f in figures.READ))
        .render_derived(name="rq", with_types=True)
    )

    def text(column: sa.ColumnElement[t.Any]) -> sa.ColumnElement[str]:
        return sa.cast(column, sa.Text)

    def read(figure: figures.Figure) -> sa.ColumnElement[t.Any]:
        column = record.c[figure.name]
        if figure.check == "integer":
            value: t.Any = sa.case(
                (
                    text(column).regexp_match(_pg_integer(figure)),
                    sa.cast(text(column), sa.Integer),
                )
            )
            if _pg_ranged(figure):
                value = sa.case((value.between(figure.low, figure.high), value))
            return t.cast(sa.ColumnElement[t.Any], value)
        if figure.check == "number":
            value = sa.case(
                (text(column).regexp_match(_PG_NUMBER), sa.cast(text(column), sa.Float))
            )
            return sa.case((value.between(figure.low, figure.high), value))
        if figure.check == "text":
            return sa.case(
                (
                    sa.func.json_typeof(column) == "string",
                    sa.func.substr(
                        column.op("#>>")(sa.text("'{}'")), 1, int(figure.high)
                    ),
                )
            )
        if figure.check == "flag":
            return sa.func.coalesce(text(column) == "true", sa.false())
        assert figure.check == "present", figure
        return column.is_not(None)

    return [table.join(record, sa.true())], {f.name: read(f) for f in figures.READ}


def _text_facts(
    dialect: sa.Dialect, table: sa.Table
) -> dict[str, sa.ColumnElement[t.Any]]:
    # Parsing the JSON is most of the cost of a summary there, and each
    # extraction parses the whole document again. The required figures are
    # in every row; the keys most rows lack are looked for as text first
    # (the writer stores them as ``"key":``), and parsed only in the rows
    # that have them.
    column = _quoted(dialect, table)
    read = _mysql_read if is_mysql(dialect) else _sqlite_read
    types: dict[str, sa.types.TypeEngine[t.Any]] = {
        "integer": sa.Integer(),
        "number": sa.Float(),
        "text": sa.String(),
        "flag": sa.Boolean(),
        "present": sa.Boolean(),
    }
    return {
        f.name: sa.literal_column(read(column, f), types[t.cast(str, f.check)])
        for f in figures.READ
    }


def _mysql_read(column: str, figure: figures.Figure) -> str:
    """MySQL's and MariaDB's SQL for ``figure``. The column is JSON (checked
    by the server): JSON_TYPE tells the type of a value, and a number is
    compared as a double before it is converted."""
    key = figure.name
    get = f"JSON_EXTRACT({column}, '$.{key}')"
    has = f"LOCATE('\"{key}\"', {column}) > 0"
    low, high = figure.low, figure.high
    if figure.check == "integer":
        # MariaDB's JSON_TYPE says INTEGER for a number written without a
        # point (1e-06, 2e2), which CAST(... AS SIGNED) reads up to the "e":
        # the value is taken as a double, and kept when it is whole.
        return (
            f"(CASE WHEN {'' if figure.required else f'{has} AND '}"
            f"JSON_TYPE({get}) IN {_MYSQL_INTEGERS} "
            f"AND ({get} + 0e0) BETWEEN {int(low)} AND {int(high)} "
            f"AND ({get} + 0e0) = FLOOR({get} + 0e0) "
            f"THEN CAST({get} + 0e0 AS SIGNED) END)"
        )
    if figure.check == "number":
        number = (
            f"(CASE WHEN JSON_TYPE({get}) IN {_MYSQL_NUMBERS} "
            f"AND ({get} + 0e0) BETWEEN {float(low)!r} AND {float(high)!r} "
            f"THEN {get} + 0e0 END)"
        )
        return number if figure.required else f"(CASE WHEN {has} THEN {number} END)"
    if figure.check == "text":
        return (
            f"(CASE WHEN {has} AND JSON_TYPE({get}) = 'STRING' "
            f"THEN LEFT(JSON_UNQUOTE({get}), {int(high)}) END)"
        )
    if figure.check == "flag":
        return (
            f"(CASE WHEN {has} "
            f"THEN COALESCE(JSON_TYPE({get}) = 'BOOLEAN' AND {get} = TRUE, FALSE) "
            "ELSE FALSE END)"
        )
    assert figure.check == "present", figure
    return (
        f"(CASE WHEN {has} THEN COALESCE(JSON_TYPE({get}) <> 'NULL', FALSE) "
        "ELSE FALSE END)"
    )


def _sqlite_read(column: str, figure: figures.Figure) -> str:
    """SQLite's SQL for ``figure``. The column is text, JSON or not: true
    reads as 1."""
    key = figure.name
    valid = f"json_valid({column})"
    get = f"json_extract({column}, '$.{key}')"
    has = f"instr({column}, '\"{key}\"') > 0"
    low, high = figure.low, figure.high

    def typed(types: str, low: t.Any, high: t.Any) -> str:
        return (
            f"(CASE WHEN {valid} THEN (CASE WHEN json_type({column}, '$.{key}') "
            f"IN {types} AND {get} BETWEEN {low!r} AND {high!r} "
            f"THEN {get} END) END)"
        )

    if figure.check == "integer":
        value = typed(_SQLITE_INTEGERS, int(low), int(high))
    elif figure.check == "number":
        value = f"CAST({typed(_SQLITE_NUMBERS, float(low), float(high))} AS REAL)"
    elif figure.check == "text":
        return (
            f"(CASE WHEN {has} AND {valid} AND json_type({column}, "
            f"'$.{key}') = 'text' THEN substr({get}, 1, {int(high)}) END)"
        )
    elif figure.check == "flag":
        return (
            f"(CASE WHEN {has} AND {valid} "
            f"THEN COALESCE(json_type({column}, '$.{key}') = 'true', 0) "
            "ELSE 0 END)"
        )
    else:
        assert figure.check == "present", figure
        return f"(CASE WHEN {has} AND {valid} THEN {get} IS NOT NULL ELSE 0 END)"
    return value if figure.required else f"(CASE WHEN {has} THEN {value} END)"


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


def bucket_index(
    conn: sa.Connection,
    occurred_at: sa.ColumnElement[t.Any],
    since: dt.datetime,
    width: int,
) -> sa.ColumnElement[t.Any]:
    """The 0-based index of the bucket of ``occurred_at``, counted from
    ``since`` in buckets of ``width`` seconds, in the dialect's terms."""
    start = sa.bindparam(
        "bucket_start", bind_time(conn.dialect, since), type_=occurred_at.type
    )
    name = conn.dialect.name
    seconds: sa.ColumnElement[t.Any]
    if name == "postgresql":
        seconds = sa.extract("epoch", occurred_at - start)
    elif name in ("mysql", "mariadb"):
        seconds = (
            sa.func.timestampdiff(sa.text("MICROSECOND"), start, occurred_at) / 1e6
        )
    else:
        seconds = (sa.func.julianday(occurred_at) - sa.func.julianday(start)) * 86400.0
    return sa.func.floor(seconds / width)
