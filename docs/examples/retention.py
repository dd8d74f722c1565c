"""A purge job for telemetry_traces: deletes what is older than the policy."""

from __future__ import annotations

import datetime as dt

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import ConfigVars, Telemetry


def delete_expired_traces(
    db: SQLAlchemy, telemetry: Telemetry, *, batch_size: int = 10_000
) -> int:
    """Delete events older than TELEMETRY_RETENTION_DAYS, a batch per transaction.

    Short transactions keep locks brief and let the writer go on inserting.
    Returns how many rows were deleted.
    """
    days = current_app.config[ConfigVars.RETENTION_DAYS]
    engine = db.engines[current_app.config[ConfigVars.BIND_KEY]]
    table = telemetry.trace_model.__table__
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    if engine.dialect.name != "postgresql":
        cutoff = cutoff.replace(tzinfo=None)  # stored as naive UTC there
    oldest = (
        sa.select(table.c.id)
        .where(table.c.occurred_at < cutoff)
        .order_by(table.c.id)
        .limit(batch_size)
    )
    deleted = 0
    while True:
        with engine.begin() as conn:
            ids = conn.execute(oldest).scalars().all()
            if not ids:
                return deleted
            conn.execute(table.delete().where(table.c.id.in_(ids)))
        deleted += len(ids)


def register(app: Flask, db: SQLAlchemy, telemetry: Telemetry) -> None:
    """Add ``flask prune-telemetry`` to the application's commands."""

    @app.cli.command("prune-telemetry")
    @click.option("--batch-size", default=10_000, show_default=True)
    def prune_telemetry(batch_size: int) -> None:
        """Delete telemetry events older than TELEMETRY_RETENTION_DAYS."""
        deleted = delete_expired_traces(db, telemetry, batch_size=batch_size)
        click.echo(f"Deleted {deleted} telemetry event(s).")
