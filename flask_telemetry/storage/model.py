"""The Flask-SQLAlchemy model mapped to ``telemetry_traces``."""

from __future__ import annotations

import typing as t
import weakref

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from . import event as ev

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

TABLE_NAME = "telemetry_traces"

_models: weakref.WeakKeyDictionary[SQLAlchemy, dict[str | None, type[t.Any]]] = (
    weakref.WeakKeyDictionary()
)


def _columns() -> dict[str, t.Any]:
    # Plain sa.JSON (json on PostgreSQL): it renders in a migration on every
    # dialect, and json is cheaper to insert than jsonb (no binary parse).
    return {
        "id": sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
        ),
        "actor_type": sa.Column(sa.String(ev.ACTOR_TYPE_LENGTH), nullable=False),
        "actor_id": sa.Column(sa.BigInteger(), nullable=True),
        "event_type": sa.Column(
            sa.String(ev.EVENT_TYPE_LENGTH), nullable=False, index=True
        ),
        "severity": sa.Column(sa.String(ev.SEVERITY_LENGTH), nullable=False),
        "request_id": sa.Column(
            sa.String(ev.REQUEST_ID_LENGTH), nullable=True, index=True
        ),
        "route_name": sa.Column(sa.String(ev.ROUTE_NAME_LENGTH), nullable=True),
        "ip_address": sa.Column(sa.String(ev.IP_ADDRESS_LENGTH), nullable=True),
        "user_agent": sa.Column(sa.String(ev.USER_AGENT_LENGTH), nullable=True),
        # ``metadata`` is reserved on declarative classes: the attribute is
        # ``metadata_`` and the column keeps the name ``metadata``.
        "metadata_": sa.Column("metadata", sa.JSON(none_as_null=True), nullable=True),
        # timestamptz on PostgreSQL, DATETIME(6) on MySQL/MariaDB (a plain
        # DATETIME would drop the microseconds).
        "occurred_at": sa.Column(
            sa.DateTime(timezone=True).with_variant(
                mysql.DATETIME(fsp=6), "mysql", "mariadb"
            ),
            nullable=False,
            index=True,
        ),
    }


def trace_model(db: SQLAlchemy, bind_key: str | None = None) -> type[t.Any]:
    """Return the model of ``telemetry_traces`` on ``db``, creating it once.

    The class is declared on ``db.Model``, so ``db.metadatas[bind_key]`` holds
    the table and Flask-Migrate's autogenerate sees it.
    """
    per_db = _models.setdefault(db, {})
    model = per_db.get(bind_key)
    if model is None:
        name = "TelemetryTrace" if bind_key is None else f"TelemetryTrace_{bind_key}"
        attrs: dict[str, t.Any] = {
            "__tablename__": TABLE_NAME,
            "__bind_key__": bind_key,
            "__table_args__": (
                sa.Index("ix_telemetry_traces_actor", "actor_type", "actor_id"),
                # The read side's request summary and counts: one event
                # type over a time window.
                sa.Index(
                    "ix_telemetry_traces_event_type_occurred_at",
                    "event_type",
                    "occurred_at",
                ),
            ),
            "__module__": __name__,
            **_columns(),
        }
        model = type(name, (db.Model,), attrs)
        per_db[bind_key] = model
    return model
