"""The documentation: it builds cleanly, is complete, and its examples work."""

from __future__ import annotations

import datetime as dt
import html
import importlib
import importlib.util
import inspect
import pkgutil
import re
import subprocess
import sys
import types
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

import flask_telemetry
from conftest import Bundle, MakeApp, require_backend
from flask_telemetry import ConfigVars
from flask_telemetry._config import DEFAULTS

DOCS = Path(__file__).parent.parent / "docs"


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML documentation, built with warnings as errors; with ``-n``, a
    cross-reference that leads nowhere is one (docs/conf.py lists the
    names that have no target on purpose)."""
    out = tmp_path_factory.mktemp("docs") / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-E", "-q"]
    result = subprocess.run(
        [*command, "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def test_docs_build_without_warnings(built_docs: Path) -> None:
    pages = {p.name for p in built_docs.glob("*.html")}
    expected = {"quickstart", "configuration", "events", "testing", "cli"}
    expected |= {"design", "retention", "deploying", "scaling", "api", "changes"}
    assert {f"{name}.html" for name in expected} <= pages


def test_every_configuration_key_is_documented(built_docs: Path) -> None:
    text = _text(built_docs / "configuration.html")
    for key in DEFAULTS:
        entry = re.search(rf"{key}¶\s*Default:\s*(.+?)\n\s*\n\s*(\S.*)", text)
        assert entry is not None, f"{key} is missing from the configuration page"
        assert entry.group(2).strip(), f"{key} has no description"


def test_the_reference_shows_the_defaults_of_the_code(built_docs: Path) -> None:
    text = _text(built_docs / "configuration.html")
    for key in (ConfigVars.DELIVERY, ConfigVars.RETENTION_DAYS):
        entry = re.search(rf"{key}¶\s*Default:\s*(.+?)\n", text)
        assert entry is not None
        assert entry.group(1).strip() == repr(DEFAULTS[key])


def test_api_reference_comes_from_docstrings(built_docs: Path) -> None:
    text = _text(built_docs / "api.html")
    for name in ("Telemetry", "TelemetryCapture", "assert_recorded", "CACHE_MISS"):
        assert name in text
    assert inspect.getdoc(flask_telemetry.Telemetry.record) is not None
    summary = inspect.getdoc(flask_telemetry.Telemetry.record)
    assert summary is not None
    assert summary.splitlines()[0] in text


def _public_names() -> t.Iterator[tuple[str, object]]:
    """Every public module, class, function and method of flask_telemetry."""
    seen: set[int] = set()
    modules = [flask_telemetry] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(
            flask_telemetry.__path__, prefix="flask_telemetry."
        )
        if not info.name.rsplit(".", 1)[-1].startswith("_")
    ]
    for module in modules:
        yield module.__name__, module
        for name, value in vars(module).items():
            if name.startswith("_") or getattr(value, "__module__", None) != (
                module.__name__
            ):
                continue
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            if id(value) in seen:
                continue
            seen.add(id(value))
            yield f"{module.__name__}.{name}", value
            if inspect.isclass(value):
                for attr, member in vars(value).items():
                    if attr.startswith("_") or not (
                        inspect.isfunction(member) or isinstance(member, property)
                    ):
                        continue
                    yield f"{module.__name__}.{name}.{attr}", member


def test_every_public_name_has_a_docstring() -> None:
    missing = {
        name
        for name, value in _public_names()
        if not (getattr(value, "__doc__", None) or "").strip()
    }
    assert sorted(missing) == [], f"public names without a docstring: {missing}"


def _example(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"docs_example_{name}", DOCS / "examples" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_documented_purge_job_deletes_only_expired_events(make_app: MakeApp) -> None:
    retention = _example("retention")
    bundle: Bundle = make_app(**{ConfigVars.RETENTION_DAYS: 14})
    retention.register(bundle.app, bundle.db, bundle.telemetry)
    now = dt.datetime.now(dt.UTC)
    ages = [30, 15, 13.9, 2, 0]
    rows: list[dict[str, t.Any]] = [
        {
            "actor_type": "system",
            "event_type": "cache_miss",
            "severity": "info",
            "occurred_at": now - dt.timedelta(days=days),
        }
        for days in ages
    ]
    with bundle.app.app_context():
        engine = bundle.db.engines[None]
        if engine.dialect.name != "postgresql":
            for row in rows:
                row["occurred_at"] = row["occurred_at"].replace(tzinfo=None)
        with engine.begin() as conn:
            conn.execute(bundle.traces.insert(), rows)
    result = bundle.runner().invoke(args=["prune-telemetry", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "Deleted 2 telemetry event(s)." in result.output
    assert len(bundle.rows()) == 3


def test_documented_partitioned_table_passes_the_check(
    make_app: MakeApp, backend: str
) -> None:
    """docs/examples/partitioning.sql on PostgreSQL: check, insert, retention."""
    if backend != "postgresql":
        pytest.skip("partitioning is documented for PostgreSQL")
    require_backend(backend)
    bundle = make_app(False)
    with bundle.app.app_context():
        engine = bundle.db.engines[None]
    raw = engine.raw_connection()
    try:
        # The DB-API cursor directly: the script's %I/%L are not parameters.
        cursor = raw.cursor()
        cursor.execute((DOCS / "examples" / "partitioning.sql").read_text())
        old = dt.date.today() - dt.timedelta(days=40)
        cursor.execute("SELECT telemetry_traces_add_partition(%s)", (old,))
        cursor.close()
        raw.commit()
    finally:
        raw.close()
    result = bundle.runner().invoke(args=["telemetry", "check"])
    assert result.exit_code == 0, result.output
    assert "warn" not in result.output

    with bundle.app.app_context():
        bundle.telemetry.record("cache_miss")
    assert [r.event_type for r in bundle.rows()] == ["cache_miss"]
    today = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    with engine.begin() as conn:
        stored = conn.exec_driver_sql(f"SELECT count(*) FROM telemetry_traces_{today}")
        assert stored.scalar() == 1
        dropped = conn.execute(sa.text("SELECT telemetry_traces_drop_partitions(7)"))
        assert dropped.scalar() == 1
        conn.exec_driver_sql("DROP FUNCTION telemetry_traces_add_partition(date)")
        conn.exec_driver_sql("DROP FUNCTION telemetry_traces_drop_partitions(integer)")
