"""The Flask-SQLAlchemy model mapped to ``telemetry_rollups`` (opt-in).

One row per time bucket, route and release: the request ends of that bucket
folded into exact counts and sums and a mergeable latency histogram (see
:mod:`flask_telemetry.reading.sketch`). Buckets are a minute, an hour or a
day long (``bucket_seconds``); each is recomputed whole from the raw rows
and written with an upsert, so folding twice, or in two processes at once,
writes the same row.

``route_name`` and ``release`` are never NULL, so that the unique key holds
for every row (NULLs are distinct in a unique index): ``""`` is the
unmatched route and the requests of no release.
"""

from __future__ import annotations

import typing as t
import weakref

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from . import row
from .model import declare

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

TABLE_NAME = "telemetry_rollups"
#: The longest release name kept (longer ones are cut).
RELEASE_LENGTH = 64

_models: weakref.WeakKeyDictionary[SQLAlchemy, dict[str | None, type[t.Any]]] = (
    weakref.WeakKeyDictionary()
)


def _time() -> sa.types.TypeEngine[t.Any]:
    # As occurred_at: timestamptz on PostgreSQL, DATETIME(6) on MySQL/MariaDB.
    return sa.DateTime(timezone=True).with_variant(
        mysql.DATETIME(fsp=6), "mysql", "mariadb"
    )


def _columns() -> dict[str, t.Any]:
    def number() -> sa.Column[t.Any]:
        return sa.Column(sa.Double(), nullable=False, default=0.0)

    return {
        "id": sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
        ),
        "bucket_seconds": sa.Column(sa.Integer(), nullable=False),
        "bucket_start": sa.Column(_time(), nullable=False),
        "route_name": sa.Column(
            sa.String(row.length("route_name")), nullable=False, default=""
        ),
        "release": sa.Column(sa.String(RELEASE_LENGTH), nullable=False, default=""),
        #: Rows folded (sampled rows once each): exact.
        "rows": sa.Column(sa.BigInteger(), nullable=False, default=0),
        #: Requests: rows weighted by 1/sample_rate (equal to rows unsampled).
        "requests": number(),
        "errors": number(),
        "client_errors": number(),
        "slow": number(),
        "duration_sum": number(),
        "duration_max": number(),
        #: ``{bin: weight}`` of the durations (reading.sketch).
        "histogram": sa.Column(sa.JSON(none_as_null=True), nullable=True),
        #: Request ends of the bucket whose figures could not be read.
        "unreadable": sa.Column(sa.BigInteger(), nullable=False, default=0),
        #: The requests whose end carries database figures (the SQLAlchemy
        #: integration's db_count and db_ms), weighted; their statements,
        #: their milliseconds in the database and in all (sums), and the
        #: histogram of their database milliseconds.
        "db_requests": number(),
        "db_count": number(),
        "db_ms": number(),
        "db_route_ms": number(),
        "db_histogram": sa.Column(sa.JSON(none_as_null=True), nullable=True),
        "folded_at": sa.Column(_time(), nullable=False),
    }


def rollup_model(db: SQLAlchemy, bind_key: str | None = None) -> type[t.Any]:
    """Return the model of ``telemetry_rollups`` on ``db``, creating it once,
    declared on ``db.Model`` so that Flask-Migrate's autogenerate sees it."""
    return declare(
        _models,
        db,
        bind_key,
        "TelemetryRollup",
        lambda: {
            "__tablename__": TABLE_NAME,
            "__table_args__": (
                sa.UniqueConstraint(
                    "bucket_seconds",
                    "bucket_start",
                    "route_name",
                    "release",
                    name="uq_telemetry_rollups_bucket",
                ),
            ),
            "__module__": __name__,
            **_columns(),
        },
    )


__all__ = ["RELEASE_LENGTH", "TABLE_NAME", "rollup_model"]
