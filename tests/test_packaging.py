"""The distributions: built, checked, installed into a fresh venv and used there.

Slow (about a minute): builds the sdist and the wheel with ``python -m
build`` (which fetches setuptools into an isolated environment), checks them
with ``twine check --strict``, installs the wheel and Flask-Migrate from the
package index into a new virtual environment, and runs a small application's
``flask db init/migrate/upgrade``, ``flask telemetry check`` and one request
there, checking the stored rows.
"""

from __future__ import annotations

import configparser
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

APP = textwrap.dedent(
    """
    from pathlib import Path

    from flask import Flask
    from flask_migrate import Migrate
    from flask_sqlalchemy import SQLAlchemy

    from flask_telemetry import EventType, Telemetry

    db = SQLAlchemy()
    migrate = Migrate()
    telemetry = Telemetry()


    def create_app():
        app = Flask(__name__)
        app.config["SQLALCHEMY_DATABASE_URI"] = (
            f"sqlite:///{Path(__file__).parent / 'app.db'}"
        )
        db.init_app(app)
        migrate.init_app(app, db)
        telemetry.init_app(app)

        @app.get("/items/<int:item>")
        def item(item):
            telemetry.record(EventType.CACHE_MISS, metadata={"item": item})
            return "ok"

        return app
    """
)

REQUEST = textwrap.dedent(
    """
    import json

    import flask_telemetry
    from app import create_app, telemetry

    app = create_app()
    response = app.test_client().get("/items/7", headers={"X-Request-ID": "pkg-1"})
    with app.app_context():
        flushed = telemetry.flush(10)
    print(json.dumps({
        "status": response.status_code,
        "flushed": flushed,
        "module": flask_telemetry.__file__,
    }))
    """
)


def _run(args: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The wheel is built from the sdist: a file missing from the sdist shows.
    _run([sys.executable, "-m", "build", "--outdir", out, ROOT], ROOT, env)
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.mark.slow
def test_distributions_hold_the_package_and_pass_twine(
    dists: dict[str, Path],
) -> None:
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        plugins = wheel.read(entry_points).decode()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [
            line.split(":", 1)[1].strip()
            for line in wheel.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    for module in ("py.typed", "__init__.py", "cli/__init__.py", "testing.py"):
        assert f"flask_telemetry/{module}" in names
    assert "flask_telemetry/pytest_plugin.py" in names
    dashboard = "flask_telemetry/dashboard/"
    for page in ("base", "overview", "route", "trace", "events"):
        assert f"{dashboard}templates/telemetry_dashboard/{page}.html" in names
    assert f"{dashboard}static/dashboard.css" in names
    assert "flask_telemetry = flask_telemetry.pytest_plugin" in plugins
    assert not any(n.startswith(("tests/", "docs/", "example_app/")) for n in names)
    # Lower bounds only: no upper bound and no exact pin on any dependency.
    assert requires
    for requirement in requires:
        spec = requirement.split(";")[0]
        assert ">=" in spec, requirement
        assert not any(op in spec for op in ("<", "==", "~=")), requirement

    with tarfile.open(dists["sdist"]) as sdist:
        files = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for name in ("flask_telemetry/py.typed", "CHANGES.rst", "LICENSE.rst"):
        assert name in files
    for name in ("README.rst", "docs/conf.py", "tests/conftest.py", "setup.cfg"):
        assert name in files

    _run(
        [sys.executable, "-m", "twine", "check", "--strict", *dists.values()],
        ROOT,
        dict(os.environ),
    )


@pytest.mark.slow
def test_wheel_works_in_a_fresh_virtualenv(
    dists: dict[str, Path], tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
        and not k.startswith(("FLASK_", "PYTEST_"))
    }
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    pip: list[str | Path] = [python, "-m", "pip", "install", "-q"]
    pip.append("--disable-pip-version-check")
    _run([*pip, dists["wheel"], "Flask-Migrate"], tmp_path, env)
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text(APP)
    env["FLASK_APP"] = "app:create_app"
    flask = env_dir / "bin" / "flask"
    _run([flask, "db", "init"], project, env)
    _run([flask, "db", "migrate", "-m", "telemetry"], project, env)
    _run([flask, "db", "upgrade"], project, env)
    check = _run([flask, "telemetry", "check"], project, env)
    assert "telemetry check passed." in check

    (project / "request.py").write_text(REQUEST)
    outcome = json.loads(_run([python, "request.py"], project, env))
    assert outcome["status"] == 200
    assert outcome["flushed"] is True
    assert outcome["module"].startswith(str(env_dir))

    with sqlite3.connect(project / "app.db") as conn:
        rows = conn.execute(
            "SELECT event_type, request_id, route_name, metadata "
            "FROM telemetry_traces ORDER BY id"
        ).fetchall()
    assert [r[0] for r in rows] == ["cache_miss", "http_request_end"]
    assert {r[1] for r in rows} == {"pkg-1"}
    assert rows[0][2] == "item"
    assert json.loads(rows[0][3]) == {"item": 7}


def test_the_metadata_names_the_project_and_its_authors() -> None:
    """setup.cfg fills Home-page and Author (empty in the built METADATA before)."""
    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[1] / "setup.cfg")
    assert config["metadata"]["author"] == "flask_telemetry maintainers"
    assert config["metadata"]["url"].startswith("https://")
