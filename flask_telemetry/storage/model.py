"""The Flask-SQLAlchemy model mapped to ``telemetry_traces``."""

from __future__ import annotations

import datetime as dt
import typing as t
import weakref

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from . import row

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

TABLE_NAME = "telemetry_traces"

_models: weakref.WeakKeyDictionary[SQLAlchemy, dict[str | None, type[t.Any]]] = (
    weakref.WeakKeyDictionary()
)


def _type(column: row.Column) -> sa.types.TypeEngine[t.Any]:
    if column.kind is str:
        return sa.String(column.length)
    if column.kind is int:
        return sa.BigInteger()
    if column.kind is dict:
        # Plain sa.JSON (json on PostgreSQL): it renders in a migration on
        # every dialect, and json is cheaper to insert than jsonb.
        return sa.JSON(none_as_null=True)
    if column.kind is dt.datetime:
        # timestamptz on PostgreSQL, DATETIME(6) on MySQL/MariaDB (a plain
        # DATETIME would drop the microseconds).
        return sa.DateTime(timezone=True).with_variant(
            mysql.DATETIME(fsp=6), "mysql", "mariadb"
        )
    raise TypeError(f"No column type for {column.kind!r} ({column.name}).")


def _columns() -> dict[str, t.Any]:
    """The model's attributes, one per column of :data:`~.row.COLUMNS`."""
    columns: dict[str, t.Any] = {
        "id": sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
        )
    }
    for column in row.COLUMNS:
        # ``metadata`` is reserved on declarative classes: the attribute is
        # ``metadata_`` and the column keeps the name ``metadata``.
        attribute = "metadata_" if column.name == "metadata" else column.name
        columns[attribute] = sa.Column(
            column.name,
            _type(column),
            nullable=column.nullable,
            index=column.indexed or None,
        )
    return columns


def trace_model(db: SQLAlchemy, bind_key: str | None = None) -> type[t.Any]:
    """Return the model of ``telemetry_traces`` on ``db``, creating it once.

    The class is declared on ``db.Model``, so ``db.metadatas[bind_key]`` holds
    the table and Flask-Migrate's autogenerate sees it.
    """
    return declare(
        _models,
        db,
        bind_key,
        "TelemetryTrace",
        lambda: {
            "__tablename__": TABLE_NAME,
            "__table_args__": (
                sa.Index("ix_telemetry_traces_actor", "actor_type", "actor_id"),
                # The read side's request summary and counts: one event
                # type over a time window.
                sa.Index(
                    "ix_telemetry_traces_event_type_occurred_at",
                    "event_type",
                    "occurred_at",
                ),
                # One route over a time window (the dashboard's route page).
                sa.Index(
                    "ix_telemetry_traces_route_occurred_at",
                    "route_name",
                    "event_type",
                    "occurred_at",
                ),
            ),
            "__module__": __name__,
            **_columns(),
        },
    )


def declare(
    models: weakref.WeakKeyDictionary[SQLAlchemy, dict[str | None, type[t.Any]]],
    db: SQLAlchemy,
    bind_key: str | None,
    name: str,
    attrs: t.Callable[[], dict[str, t.Any]],
) -> type[t.Any]:
    """The model ``name`` (``name_<bind key>`` on a bind) declared on
    ``db.Model`` with ``attrs()`` and the bind key, once per ``db`` and bind:
    kept in ``models``."""
    per_db = models.setdefault(db, {})
    model = per_db.get(bind_key)
    if model is None:
        full_name = name if bind_key is None else f"{name}_{bind_key}"
        model = type(full_name, (db.Model,), {"__bind_key__": bind_key, **attrs()})
        per_db[bind_key] = model
    return model
