"""An example shop that records telemetry from its blueprints.

Run it with ``make demo`` (drives a few requests and prints the stored rows)
or ``make serve``. SQLite in the instance folder by default; any database
through ``DATABASE_URL``; with ``REDIS_URL``, price changes enqueue an RQ job
(see :mod:`example_app.jobs`).
"""

from __future__ import annotations

import os
import pathlib
import secrets
import typing as t

import click
from flask import Flask, g, session

from flask_telemetry import ActorType

from . import admin, auth, catalogue, jobs, shipping
from .extensions import db, migrate, telemetry
from .models import Product, User

MIGRATIONS = pathlib.Path(__file__).with_name("migrations")


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """The application factory."""
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY") or _secret_key(app.instance_path),
        # Exact figures for any window, and history past the raw retention:
        # run `flask telemetry rollup` every few minutes (make serve does).
        TELEMETRY_ROLLUPS=True,
        DEMO_LOGIN_TOKEN=os.environ.get("DEMO_LOGIN_TOKEN") or None,
        SQLALCHEMY_DATABASE_URI=os.environ.get(
            "DATABASE_URL",
            f"sqlite:///{os.path.join(app.instance_path, 'example.db')}",
        ),
    )
    if config:
        app.config.update(config)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    telemetry.init_app(app)
    jobs.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(catalogue.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(shipping.bp)
    telemetry.init_dashboard(app, authorize=may_see_dashboard)
    auth.init_demo_login(app)
    app.cli.add_command(seed)
    return app


def _secret_key(folder: str) -> str:
    """A random key kept in the instance folder (readable by its owner only),
    made on first use: a known default would let anyone sign a session."""
    path = pathlib.Path(folder) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(key)
        return key


@telemetry.actor_loader
def current_actor() -> tuple[ActorType, int] | None:
    """Who is acting: the signed-in user, as an admin or a user."""
    user = g.get("user")
    if user is None:
        return None
    return (ActorType.ADMIN if user.is_admin else ActorType.USER), user.id


def may_see_dashboard() -> bool:
    """The telemetry dashboard is for an admin who passed the step-up check."""
    user = g.get("user")
    return user is not None and user.is_admin and bool(session.get("stepped_up"))


@click.command("seed")
def seed() -> None:
    """Add a demo user, an admin and two products (idempotent)."""
    seed_data()
    click.echo("Seeded users 'alice' (password 'wonderland') and 'root' (admin).")


def seed_data() -> None:
    """Insert the demo rows unless they exist."""
    if db.session.scalar(db.select(User).filter_by(username="alice")) is None:
        alice = User(username="alice", stepup_code="000000", is_admin=False)
        alice.set_password("wonderland")
        admin_user = User(username="root", stepup_code="424242", is_admin=True)
        admin_user.set_password("correct horse")
        db.session.add_all(
            [
                alice,
                admin_user,
                Product(name="Teapot", price_cents=1800),
                Product(name="Kettle", price_cents=3200),
            ]
        )
        db.session.commit()
