"""The ``flask telemetry`` command group, against every configured database."""

from __future__ import annotations

import json
import logging
import re
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from conftest import Bundle, MakeApp
from flask_telemetry import ConfigVars, EventType, Telemetry
from flask_telemetry._config import DEFAULTS


def _check(bundle: Bundle) -> Result:
    return bundle.runner().invoke(args=["telemetry", "check"])


def _count(bundle: Bundle) -> int:
    with bundle.app.app_context():
        engine = bundle.db.engines[bundle.app.config[ConfigVars.BIND_KEY]]
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(bundle.traces)
            return int(conn.execute(query).scalar_one())


def test_check_passes_on_a_created_table(make_app: MakeApp) -> None:
    bundle = make_app()
    result = _check(bundle)
    assert result.exit_code == 0, result.output
    assert "ok    table telemetry_traces exists" in result.stdout
    assert "ok    11 columns match the model" in result.stdout
    assert "ok    probe insert works (rolled back)" in result.stdout
    assert "warn" not in result.stdout
    assert result.stdout.rstrip().endswith("telemetry check passed.")
    assert _count(bundle) == 0  # the probe was rolled back


# Flask-Migrate's env.py template calls the deprecated db.get_engine().
@pytest.mark.filterwarnings("ignore:'get_engine' is deprecated:DeprecationWarning")
def test_check_passes_on_a_migrated_database(make_app: MakeApp, tmp_path: Path) -> None:
    bundle = make_app(False)
    Migrate(bundle.app, bundle.db, directory=str(tmp_path / "migrations"))
    runner = bundle.runner()
    for args in (
        ["db", "init"],
        ["db", "migrate", "-m", "telemetry"],
        ["db", "upgrade"],
    ):
        outcome = runner.invoke(args=args)
        assert outcome.exit_code == 0, outcome.output
    result = _check(bundle)
    assert result.exit_code == 0, result.output
    assert "warn" not in result.stdout
    with bundle.app.app_context():
        bundle.db.session.execute(sa.text("DROP TABLE alembic_version"))
        bundle.db.session.commit()


def test_check_fails_on_an_empty_database(make_app: MakeApp) -> None:
    bundle = make_app(False)
    result = _check(bundle)
    assert result.exit_code == 1
    assert "FAIL  table telemetry_traces does not exist" in result.stderr
    assert "flask db upgrade" in result.stderr
    assert "Error: telemetry check failed (1 problem(s))" in result.stderr
    assert "probe" not in result.output


def _create_variant(
    bundle: Bundle,
    *,
    replace: t.Sequence[sa.Column[t.Any]] = (),
    drop: t.Collection[str] = (),
) -> None:
    """Create telemetry_traces as the model has it, without its indexes,
    with the ``replace`` columns instead of (or beside) the model's."""
    replaced = {c.name: c for c in replace}
    metadata = sa.MetaData()
    columns = [
        sa.Column(c.name, c.type, nullable=c.nullable, primary_key=c.primary_key)
        if c.name not in replaced
        else replaced.pop(c.name)
        for c in bundle.traces.columns
        if c.name not in drop
    ]
    sa.Table(bundle.traces.name, metadata, *columns, *replaced.values())
    with bundle.app.app_context():
        metadata.create_all(bundle.db.engines[None])


def test_check_fails_on_a_wrong_column_type(make_app: MakeApp) -> None:
    bundle = make_app(False)
    _create_variant(
        bundle,
        replace=[
            sa.Column("actor_id", sa.Integer, nullable=True),
            sa.Column("event_type", sa.String(16), nullable=False),
        ],
    )
    result = _check(bundle)
    assert result.exit_code == 1
    # MariaDB shows display widths: INTEGER(11).
    assert re.search(
        r"FAIL  column actor_id is INTEGER(\(11\))?, the model expects BIGINT\n",
        result.stderr,
    )
    assert "FAIL  column event_type is VARCHAR(16), the model expects VARCHAR(64)" in (
        result.stderr
    )
    assert "problem(s)" in result.stderr
    assert "columns match the model" not in result.stdout


def test_check_fails_on_a_missing_column_and_warns_on_extras(
    make_app: MakeApp,
) -> None:
    bundle = make_app(False)
    _create_variant(
        bundle,
        drop=["user_agent"],
        replace=[sa.Column("tenant", sa.String(20), nullable=True)],
    )
    result = _check(bundle)
    assert result.exit_code == 1
    assert "FAIL  column user_agent is missing" in result.stderr
    assert "warn  column tenant is not in the model" in result.stdout
    assert "index ix_telemetry_traces_event_type is missing" in result.stdout


def test_check_fails_when_a_column_is_not_nullable(make_app: MakeApp) -> None:
    bundle = make_app(False)
    _create_variant(
        bundle, replace=[sa.Column("request_id", sa.String(64), nullable=False)]
    )
    result = _check(bundle)
    assert result.exit_code == 1
    assert "FAIL  column request_id should be NULL" in result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        "mysql+pymysql://root@127.0.0.1:1/nowhere",
        "sqlite:////nonexistent-directory/telemetry.db",
    ],
)
def test_check_fails_on_an_unreachable_database(url: str) -> None:
    app = Flask("unreachable")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    SQLAlchemy(app)
    Telemetry(app)
    result = app.test_cli_runner().invoke(args=["telemetry", "check"])
    assert result.exit_code == 1
    assert "FAIL  cannot use the database: OperationalError" in result.stderr
    assert "Error: telemetry check failed" in result.stderr
    assert "Traceback" not in result.output


def test_check_uses_the_telemetry_bind(make_app: MakeApp, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    bundle = make_app(
        False,
        SQLALCHEMY_BINDS={"telemetry": url},
        **{ConfigVars.BIND_KEY: "telemetry"},
    )
    result = _check(bundle)
    assert result.exit_code == 1
    assert f"on telemetry (sqlite:///{tmp_path / 'telemetry.db'})" in result.stdout
    with bundle.app.app_context():
        bundle.db.create_all(bind_key="telemetry")
    result = _check(bundle)
    assert result.exit_code == 0, result.output


def test_check_mentions_disabled_telemetry(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.ENABLED: False})
    result = _check(bundle)
    assert result.exit_code == 0, result.output
    assert "TELEMETRY_ENABLED is False" in result.stdout


def test_config_prints_every_setting(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.SLOW_REQUEST_MS: 250, "TELEMETRY_COLOUR": "red"})
    result = bundle.runner().invoke(args=["telemetry", "config"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for key in DEFAULTS:
        assert any(line.startswith(f"{key} ") for line in lines), key
    assert any(
        line.startswith(ConfigVars.SLOW_REQUEST_MS)
        and line.endswith("= 250  # changed")
        for line in lines
    )
    assert any(
        line.startswith(ConfigVars.REQUEST_ID_HEADER)
        and line.endswith("= 'X-Request-ID'")
        for line in lines
    )
    assert "TELEMETRY_COLOUR" in result.stdout
    assert "not a flask_telemetry setting" in result.stdout
    assert lines[-1] == "# delivery in use: SyncDelivery"


def test_config_as_json(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.DELIVERY: "async"})
    result = bundle.runner().invoke(args=["telemetry", "config", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert set(DEFAULTS) <= set(shown)
    assert shown[ConfigVars.DELIVERY] == "async"
    assert shown[ConfigVars.BIND_KEY] is None


def test_check_fails_when_occurred_at_loses_zone_or_microseconds(
    make_app: MakeApp, backend: str
) -> None:
    bundle = make_app(False)
    _create_variant(
        bundle, replace=[sa.Column("occurred_at", sa.DateTime, nullable=False)]
    )
    result = _check(bundle)
    expected = {
        "sqlite": None,  # SQLite stores text: nothing is lost
        "postgresql": "is TIMESTAMP WITHOUT TIME ZONE, the model expects "
        "TIMESTAMP WITH TIME ZONE",
        "mariadb": "is DATETIME, the model expects DATETIME(6)",
    }[backend]
    if expected is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1
        assert f"FAIL  column occurred_at {expected}\n" in result.stderr


def test_a_missing_table_names_the_fix_and_the_open_breaker_is_said_once(
    make_app: MakeApp,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sync delivery, no table: the failure says how to make the table, and
    the breaker that opens says so once, with its cause."""
    # Alembic's fileConfig (the migration tests above) disables the loggers
    # that exist when it runs.
    monkeypatch.setattr(logging.getLogger("flask_telemetry"), "disabled", False)
    bundle = make_app(
        False,
        **{
            ConfigVars.MAX_RETRIES: 0,
            ConfigVars.BREAKER_THRESHOLD: 2,
            ConfigVars.BREAKER_COOLDOWN: 0.0,
        },
    )
    caplog.set_level("ERROR", logger="flask_telemetry")
    with bundle.app.app_context():
        for _ in range(6):
            bundle.telemetry.record(EventType.CACHE_MISS)
        bundle.telemetry.flush(5)
    errors = [r.getMessage() for r in caplog.records if r.name == "flask_telemetry"]
    failures = [m for m in errors if "storage failed" in m]
    assert failures, errors
    assert all("telemetry_traces" in m for m in failures), failures
    assert all(
        "run `flask db upgrade`, or `flask telemetry check`" in m for m in failures
    ), failures
    opened = [m for m in errors if "circuit breaker is open" in m]
    assert len(opened) == 1, errors  # once, not per failed probe
    assert "telemetry_traces" in opened[0]  # with its cause
