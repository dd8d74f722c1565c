"""Fixtures: an app builder over every configured database backend.

SQLite always runs. PostgreSQL and MariaDB run when TELEMETRY_TEST_POSTGRES_URL /
TELEMETRY_TEST_MARIADB_URL are set; a set URL whose server does not answer
fails the session instead of skipping. Each test session works in a database
of its own, created here and dropped at the end, so parallel runs cannot
disturb each other.

The tests sit in folders named after the package's (``http``, ``domain``,
``storage``, ``reading``, ``dashboard``, ``cli``, ``integrations``), with
``servers`` for real servers under load and faults; tests of the whole
package stay here. The support modules beside this file (``fault_app``,
``reading_data``...) are imported by name from any folder: pytest puts this
folder on ``sys.path`` when it loads this file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import typing as t
import uuid

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import ConfigVars, Telemetry

SERVER_ENV = {
    "postgresql": "TELEMETRY_TEST_POSTGRES_URL",
    "mariadb": "TELEMETRY_TEST_MARIADB_URL",
}
BACKENDS = ["sqlite", "postgresql", "mariadb"]


def server_url(backend: str) -> str | None:
    """The configured server URL of ``backend``, or None when not set."""
    return os.environ.get(SERVER_ENV[backend]) or None


def _create_database(url: str, name: str) -> str:
    base = sa.make_url(url)
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        raise RuntimeError(
            f"{base.render_as_string(hide_password=True)} is configured for the "
            f"tests but does not answer: {exc.orig}"
        ) from exc
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _drop_database(url: str, name: str) -> None:
    engine = sa.create_engine(sa.make_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        else:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    engine.dispose()


@pytest.fixture(autouse=True)
def _telemetry_logger_left_enabled() -> t.Iterator[None]:
    """Each test finds the package's logger enabled: the ``env.py`` that
    ``flask db init`` writes (tests/cli) runs Alembic's ``fileConfig()``,
    which disables every logger that exists at that moment, and a later
    test reading telemetry's log lines would then read nothing."""
    yield
    logging.getLogger("flask_telemetry").disabled = False


@pytest.fixture(scope="session")
def server_databases() -> t.Iterator[dict[str, str]]:
    """A fresh database on each configured server, for this session only."""
    made: dict[str, tuple[str, str]] = {}
    suffix = uuid.uuid4().hex[:10]
    try:
        for backend in SERVER_ENV:
            url = server_url(backend)
            if url is not None:
                name = f"ft_{backend[:2]}_{suffix}"
                made[backend] = (url, name)
                made_url = _create_database(url, name)
                made[backend] = (made_url, name)
        yield {b: u for b, (u, _) in made.items()}
    finally:
        for backend, (_, name) in made.items():
            url = server_url(backend)
            if url is not None:
                _drop_database(url, name)


def require_backend(backend: str) -> None:
    """Skip, with the reason shown, when ``backend``'s server is not configured."""
    if backend != "sqlite" and server_url(backend) is None:
        pytest.skip(f"{SERVER_ENV[backend]} is not set")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each database backend in turn."""
    name: str = request.param
    require_backend(name)
    return name


@pytest.fixture
def db_url(backend: str, server_databases: dict[str, str], tmp_path: t.Any) -> str:
    """A database URL for this test on ``backend``."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return server_databases[backend]


@dataclasses.dataclass
class Bundle:
    """An application with its extensions, as a test sees them."""

    app: Flask
    db: SQLAlchemy
    telemetry: Telemetry
    note: type[t.Any]
    #: Binds pointing at a server that is down on purpose: never created.
    unreachable_binds: frozenset[str | None] = frozenset()

    @property
    def traces(self) -> sa.Table:
        table: sa.Table = self.telemetry.trace_model.__table__
        return table

    def rows(self) -> list[sa.Row[t.Any]]:
        """Every stored trace, oldest first (flushes pending events first)."""
        with self.app.app_context():
            self.telemetry.flush(10)
            engine = self.db.engines[self.app.config[ConfigVars.BIND_KEY]]
            with engine.connect() as conn:
                return list(conn.execute(sa.select(self.traces).order_by("id")))

    @contextlib.contextmanager
    def check_constraint(self, name: str, condition: str) -> t.Iterator[None]:
        """The table refuses rows that fail ``condition`` while inside.

        SQLite cannot add a constraint to a table: it is rebuilt with one
        (empty). The constraint leaves the shared table object afterwards.
        """
        with self.app.app_context(), self.db.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                self.traces.drop(conn)
                self.traces.append_constraint(sa.CheckConstraint(condition, name=name))
                self.traces.create(conn)
            else:
                conn.execute(
                    sa.text(
                        f"ALTER TABLE telemetry_traces ADD CONSTRAINT {name} "
                        f"CHECK ({condition})"
                    )
                )
        try:
            yield
        finally:
            for constraint in list(self.traces.constraints):
                if constraint.name == name:
                    self.traces.constraints.remove(constraint)

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def runner(self) -> FlaskCliRunner:
        return self.app.test_cli_runner()


class MakeApp(t.Protocol):
    def __call__(self, create: bool = ..., /, **config: t.Any) -> Bundle: ...


@pytest.fixture
def make_app(db_url: str) -> t.Iterator[MakeApp]:
    """Build apps on ``db_url``; tables made unless ``create=False``; dropped after."""
    built: list[Bundle] = []

    def build(create: bool = True, /, **config: t.Any) -> Bundle:
        app = Flask(f"test_app_{len(built)}")
        app.config.update(
            SQLALCHEMY_DATABASE_URI=db_url,
            TESTING=True,
            **{ConfigVars.DELIVERY: "sync"},
        )
        app.config.update({k: v for k, v in config.items() if k.isupper()})
        db = SQLAlchemy()

        class Note(db.Model):  # type: ignore[name-defined, misc]
            __tablename__ = "notes"
            id = sa.Column(sa.Integer, primary_key=True)
            body = sa.Column(sa.String(200), nullable=False)

        db.init_app(app)
        telemetry = Telemetry(app)
        bundle = Bundle(
            app=app,
            db=db,
            telemetry=telemetry,
            note=Note,
            unreachable_binds=frozenset(config.pop("unreachable_binds", ())),
        )
        built.append(bundle)
        if create:
            with app.app_context():
                for key in db.engines:
                    if key not in bundle.unreachable_binds:
                        db.create_all(bind_key=key)
        return bundle

    yield build
    for bundle in built:
        with bundle.app.app_context():
            bundle.telemetry.shutdown(5)
            bundle.db.session.remove()
            for key, engine in bundle.db.engines.items():
                if key not in bundle.unreachable_binds:
                    bundle.db.drop_all(bind_key=key)
                engine.dispose()


@pytest.fixture
def bundle(make_app: MakeApp) -> Bundle:
    """A default app (sync delivery) on each backend."""
    return make_app()


@pytest.fixture
def app(bundle: Bundle) -> Flask:
    return bundle.app


@pytest.fixture
def db(bundle: Bundle) -> SQLAlchemy:
    return bundle.db


@pytest.fixture
def telemetry(bundle: Bundle) -> Telemetry:
    return bundle.telemetry


@pytest.fixture
def client(bundle: Bundle) -> FlaskClient:
    return bundle.client()


@pytest.fixture
def runner(bundle: Bundle) -> FlaskCliRunner:
    return bundle.runner()


#: Tables the migration tests create: the example app's and Alembic's.
MIGRATED_TABLES = (
    "telemetry_traces",
    "telemetry_rollups",
    "users",
    "products",
    "alembic_version",
)


@pytest.fixture
def clean_url(db_url: str) -> t.Iterator[str]:
    """``db_url``, with whatever migrations created there dropped afterwards."""
    yield db_url
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        for table in MIGRATED_TABLES:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def pytest_terminal_summary(terminalreporter: t.Any) -> None:
    """One line per reason for skipped tests, instead of one per test.

    ``-ra`` would list every test skipped for want of a database URL; the
    summary of a run without them would be buried under those lines.
    """
    skipped = terminalreporter.stats.get("skipped", [])
    reasons: dict[str, int] = {}
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"SKIPPED {count} test(s): {reason}")
