"""pg_partman keeps ``telemetry_traces``: the documented setup on a real server.

``flask db upgrade`` makes the plain table, docs/examples/partman.sql turns
it into daily partitions kept by the real extension (Debian's
``postgresql-15-partman``, which ``.ci/run`` installs), in a database of the
test's own whose default time zone is not UTC (the partitions must be UTC
days all the same). Then: rows land in the partition of their UTC day on
both sides of midnight, ``prune`` drops whole partitions through
pg_partman's retention, and ``flask telemetry check`` describes the table
and reports a missing premade partition.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pathlib
import subprocess
import sys
import textwrap
import typing as t
import uuid

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from conftest import server_url
from flask_telemetry import ConfigVars, EventType, Telemetry
from flask_telemetry.storage.row import TraceEvent
from flask_telemetry.storage.writer import TraceWriter

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
SETUP = ROOT / "docs" / "examples" / "partman.sql"
FILTER = ROOT / "docs" / "examples" / "migrate_partitions.py"
UTC = dt.UTC


#: A project with Flask-Migrate, given the documented filter of partitions.
PROJECT = textwrap.dedent(
    """
    import os

    from flask import Flask
    from flask_migrate import Migrate
    from flask_sqlalchemy import SQLAlchemy
    from partitions import include_name

    from flask_telemetry import Telemetry

    db = SQLAlchemy()
    migrate = Migrate()
    telemetry = Telemetry()


    def create_app():
        app = Flask(__name__)
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
        db.init_app(app)
        migrate.init_app(app, db, include_name=include_name)
        telemetry.init_app(app)
        return app
    """
)


def _flask(project: pathlib.Path, url: str, *args: str) -> str:
    """``flask db ARGS`` in ``project`` on ``url``; its output."""
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(project)}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app:create_app", "db", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _libpq(url: str) -> str:
    """``url`` as psql takes it."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(False)


@pytest.fixture(scope="module")
def partman_url() -> t.Iterator[str]:
    """A database of this module's own on the configured PostgreSQL, with a
    default time zone far from UTC; dropped at the end."""
    base = server_url("postgresql")
    if base is None:
        pytest.skip("TELEMETRY_TEST_POSTGRES_URL is not set")
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"ft_partman_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            available = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'"
            ).scalar()
            if not available:
                pytest.skip(
                    "pg_partman is not installed on the server "
                    "(apt-get install postgresql-15-partman)"
                )
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
            conn.exec_driver_sql(
                f"ALTER DATABASE {name} SET timezone = 'Pacific/Kiritimati'"
            )
        yield sa.make_url(base).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(scope="module")
def managed(partman_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``flask db upgrade``, one row in the plain table, then the documented
    pg_partman setup run with psql."""
    project = tmp_path_factory.mktemp("partman_project")
    (project / "partitions.py").write_text(FILTER.read_text())
    (project / "app.py").write_text(PROJECT)
    _flask(project, partman_url, "init")
    _flask(project, partman_url, "migrate", "-m", "telemetry")
    _flask(project, partman_url, "upgrade")
    engine = sa.create_engine(partman_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO telemetry_traces (actor_type, event_type, severity, "
            "occurred_at) VALUES ('system', 'cache_hit', 'info', now())"
        )
    engine.dispose()
    result = subprocess.run(
        ["psql", _libpq(partman_url), "-v", "ON_ERROR_STOP=1", "-q", "-f", str(SETUP)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    again = _flask(project, partman_url, "migrate", "-m", "again")
    assert "No changes in schema detected." in again
    return partman_url


@contextlib.contextmanager
def _app(url: str) -> t.Iterator[tuple[Flask, Telemetry]]:
    """An app on ``url`` (sync delivery); its engines closed at the end."""
    app = Flask("partman")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=url,
        **{ConfigVars.DELIVERY: "sync", ConfigVars.RECORD_REQUESTS: False},
    )
    db = SQLAlchemy(app)
    telemetry = Telemetry(app)
    try:
        yield app, telemetry
    finally:
        with app.app_context():
            telemetry.shutdown(5)
            for engine in db.engines.values():
                engine.dispose()


def _store(url: str, table: sa.Table, times: list[dt.datetime], tag: str) -> None:
    """Rows at ``times`` through the writer's own insert (COPY on psycopg)."""
    engine = sa.create_engine(url)
    writer = TraceWriter(lambda: engine, table)
    rows, rejected = writer.validate(
        [
            TraceEvent(
                actor_type="system",
                actor_id=None,
                event_type="cache_miss",
                severity="info",
                request_id=None,
                route_name=None,
                ip_address=None,
                user_agent=None,
                metadata={"tag": tag, "at": when.isoformat()},
                occurred_at=when,
            )
            for when in times
        ]
    )
    assert not rejected
    writer.insert(rows)
    engine.dispose()


def _where(url: str, tag: str) -> dict[str, str]:
    """Partition of each row tagged ``tag``, by its time."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT metadata->>'at', tableoid::regclass::text FROM telemetry_traces "
            f"WHERE metadata->>'tag' = '{tag}'"
        ).all()
    engine.dispose()
    return {at: part for at, part in found}


def _part(day: dt.date) -> str:
    return f"telemetry_traces_p{day:%Y_%m_%d}"


def _exists(url: str, name: str) -> tuple[bool, bool]:
    """Whether table ``name`` exists, and whether it is a partition."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            f"SELECT to_regclass('{name}') IS NOT NULL, EXISTS (SELECT 1 FROM "
            f"pg_inherits WHERE inhrelid = to_regclass('{name}'))"
        ).one()
    engine.dispose()
    return bool(row[0]), bool(row[1])


def test_setup_keeps_the_rows_and_the_model(managed: str) -> None:
    engine = sa.create_engine(managed)
    with engine.connect() as conn:
        kind = conn.exec_driver_sql(
            "SELECT relkind FROM pg_class WHERE oid = 'telemetry_traces'::regclass"
        ).scalar()
        moved = conn.exec_driver_sql(
            "SELECT count(*) FROM telemetry_traces WHERE event_type = 'cache_hit'"
        ).scalar()
    engine.dispose()
    assert kind == "p"
    assert moved == 1


def test_rows_land_in_their_utc_day_across_midnight(managed: str) -> None:
    today = dt.datetime.now(UTC).date()
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), UTC)
    before = midnight - dt.timedelta(microseconds=1)
    with _app(managed) as (app, telemetry):
        table = telemetry.trace_model.__table__
        _store(managed, table, [before, midnight], "midnight")
        with app.app_context():
            telemetry.record(
                EventType.CACHE_MISS, metadata={"tag": "live", "at": "now"}
            )
            assert telemetry.flush(5)
            assert telemetry.stats()["written"] == 1
    assert _where(managed, "midnight") == {
        before.isoformat(): _part(today),
        midnight.isoformat(): _part(today + dt.timedelta(days=1)),
    }
    assert _where(managed, "live") == {"now": _part(dt.datetime.now(UTC).date())}


def test_check_recognises_partman_and_a_missing_premade_partition(
    managed: str,
) -> None:
    later = dt.datetime.now(UTC).date() + dt.timedelta(days=2)
    engine = sa.create_engine(managed)
    with _app(managed) as (app, _):
        runner = app.test_cli_runner()
        result = runner.invoke(args=["telemetry", "check"])
        assert result.exit_code == 0, result.output
        assert "partitioned by pg_partman (1 day partitions, 7 premade" in (
            result.output
        )
        assert "partitions are ready through" in result.output
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {_part(later)}")
        try:
            result = runner.invoke(args=["telemetry", "check"])
        finally:
            # pg_partman fills the gap, as check says.
            with engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL timezone = 'UTC'")
                conn.exec_driver_sql(
                    "SELECT partman.partition_gap_fill('public.telemetry_traces')"
                )
            engine.dispose()
    assert result.exit_code == 0, result.output
    assert (
        f"warn  the partition of {later:%Y-%m-%d} (UTC) is missing: its rows "
        "land in the default partition telemetry_traces_default" in result.output
    )
    assert "partition_gap_fill('public.telemetry_traces')" in result.output
    assert _exists(managed, _part(later)) == (True, True)


def test_prune_drops_whole_partitions_through_partman_retention(
    managed: str,
) -> None:
    today = dt.datetime.now(UTC).date()
    old_days = [today - dt.timedelta(days=n) for n in (6, 5)]
    old = [
        dt.datetime.combine(day, dt.time(hour), UTC)
        for day in old_days
        for hour in (0, 12, 23)
    ]
    engine = sa.create_engine(managed)
    with _app(managed) as (app, telemetry):
        _store(managed, telemetry.trace_model.__table__, old, "old")
        assert set(_where(managed, "old").values()) == {_part(d) for d in old_days}
        with engine.begin() as conn:  # the operator keeps expired days detached
            conn.exec_driver_sql(
                "UPDATE partman.part_config SET retention_keep_table = true "
                "WHERE parent_table = 'public.telemetry_traces'"
            )
        try:
            with app.app_context():
                result = telemetry.prune(older_than_days=3)
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "UPDATE partman.part_config SET retention_keep_table = false "
                    "WHERE parent_table = 'public.telemetry_traces'"
                )
    assert {_part(d) for d in old_days} <= set(result.partition_names)
    assert result.deleted == len(old)
    assert _where(managed, "old") == {}
    # pg_partman's retention did it: detached and kept, as configured,
    # where a DROP TABLE would have removed them.
    for day in old_days:
        assert _exists(managed, _part(day)) == (True, False)
    with engine.begin() as conn:
        for day in old_days:
            conn.exec_driver_sql(f"DROP TABLE {_part(day)}")
        left = conn.exec_driver_sql(
            "SELECT count(*) FROM telemetry_traces WHERE occurred_at >= "
            "now() - interval '3 days'"
        ).scalar()
    engine.dispose()
    assert left  # the recent rows stay
