"""``make demo``: migrate the example app, drive a few requests, print the traces.

Runs ``flask db upgrade`` (Flask-Migrate) on the configured database (SQLite
in the instance folder unless ``DATABASE_URL`` is set), seeds demo users,
signs in, passes the step-up check, browses and changes a price through the
Flask test client, then prints the rows telemetry stored for this run.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask_migrate import upgrade

from . import create_app, seed_data
from .extensions import db, telemetry


def main() -> None:
    app = create_app()
    with app.app_context():
        upgrade()
        seed_data()
        before = db.session.scalar(sa.select(sa.func.max(telemetry.trace_model.id)))
    client = app.test_client()
    run = [
        client.get("/products/1"),
        client.get("/products/1"),
        client.post("/auth/login", json={"username": "root", "password": "wrong"}),
        client.post(
            "/auth/login", json={"username": "root", "password": "correct horse"}
        ),
        client.post("/auth/stepup", json={"code": "424242"}),
        client.post("/admin/products/1/price", json={"price_cents": 1900}),
        client.get("/products/1", headers={"X-Request-ID": "demo-request-1"}),
        client.get("/products/999"),
        # No carrier runs on SHIPPING_URL: recorded as external_call_fail.
        client.get("/shipping/quote/1"),
    ]
    with app.app_context():
        telemetry.flush(10)
        model = telemetry.trace_model
        rows = db.session.scalars(
            sa.select(model).where(model.id > (before or 0)).order_by(model.id)
        ).all()
        print(f"database: {db.engine.url.render_as_string(hide_password=True)}")
        print(f"{len(run)} requests -> {len(rows)} rows in telemetry_traces:\n")
        print(
            f"{'id':>4} {'occurred_at':<15} {'event_type':<20} {'severity':<8} "
            f"{'actor':<9} {'id':>3} {'route_name':<22} {'request_id':<36} metadata"
        )
        for row in rows:
            print(
                f"{row.id:>4} {row.occurred_at:%H:%M:%S.%f} {row.event_type:<20} "
                f"{row.severity:<8} {row.actor_type:<9} {row.actor_id or '-':>3} "
                f"{row.route_name or '-':<22} {row.request_id or '-':<36} "
                f"{json.dumps(row.metadata_)}"
            )
        print(f"\nstats: {telemetry.stats()}")
        url = db.engine.url
        if url.get_backend_name() == "sqlite":
            query = "select * from telemetry_traces"
            print(f'\nSee them yourself: sqlite3 {url.database} "{query}"')


if __name__ == "__main__":
    main()
