"""Loud when broken, quiet when healthy (issue 11, §5).

The stderr tests run an application in a subprocess with no logging
configured at all, as a new user runs one: pytest's own log capture would
otherwise count as configured logging.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import typing as t

import pytest

from conftest import Bundle, MakeApp, server_url
from flask_telemetry import EventType, Telemetry

_APP = textwrap.dedent(
    """
    import sys, time
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from flask_telemetry import Telemetry, EventType

    app = Flask("loud")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=sys.argv[1],
        TELEMETRY_DELIVERY=sys.argv[2],
        TELEMETRY_FLUSH_INTERVAL=0.05,
        TELEMETRY_MAX_RETRIES=0,
        TELEMETRY_BREAKER_THRESHOLD=1000,
        TELEMETRY_DELIVERY_MODE="sync",  # misspelled on purpose
    )
    SQLAlchemy(app)
    telemetry = Telemetry(app)  # no table: never created
    with app.app_context():
        for i in range(int(sys.argv[3])):  # async: one failed batch of them
            telemetry.record(EventType.CACHE_MISS, metadata={"i": i})
        telemetry.flush(5)
        telemetry.record("no_such_event")
        print(telemetry.stats()["dropped"]["storage_error"])
    """
)


def _run(url: str, delivery: str, events: int, tmp_path: t.Any) -> tuple[str, str]:
    script = tmp_path / "loud.py"
    script.write_text(_APP)
    result = subprocess.run(
        [sys.executable, str(script), url, delivery, str(events)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def _urls(tmp_path: t.Any, server_databases: dict[str, str]) -> dict[str, str]:
    urls = {"sqlite": f"sqlite:///{tmp_path / 'loud.db'}"}
    for backend in ("postgresql", "mariadb"):
        if server_url(backend) is not None:
            urls[backend] = server_databases[backend]
    return urls


@pytest.mark.slow
@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_first_failure_of_each_kind_reaches_stderr_with_its_cause(
    tmp_path: t.Any, server_databases: dict[str, str], delivery: str
) -> None:
    """No logging configured: a missing table is on stderr once, naming the
    table, then rate-limited; the misspelled key and the unknown event type
    are there too; no driver noise."""
    for backend, url in _urls(tmp_path, server_databases).items():
        stdout, stderr = _run(url, delivery, 40, tmp_path)
        lines = stderr.splitlines()
        failures = [line for line in lines if "telemetry_traces" in line]
        print(f"\n{backend} {delivery}: {len(lines)} stderr lines")
        print("\n".join(lines[:6]))
        assert int(stdout.strip()) == 40  # all 40 counted as storage_error
        assert failures, stderr  # the cause: the missing table, by name
        assert len(failures) <= 5  # rate-limited, not one line per event
        assert len(lines) < 20, stderr
        assert any(
            "TELEMETRY_DELIVERY_MODE is not a flask_telemetry setting; did you "
            "mean TELEMETRY_DELIVERY?" in line
            for line in lines
        ), stderr
        assert any(
            "Unknown event type 'no_such_event'" in line
            and "Telemetry(event_types=[" in line
            for line in lines
        ), stderr
        assert "error ignored" not in stderr  # psycopg's pipeline noise


@pytest.mark.slow
def test_a_wrong_url_is_heard_too(tmp_path: t.Any) -> None:
    """Nothing listens there: the driver's own message reaches stderr."""
    wrong = "postgresql+psycopg://postgres@127.0.0.1:9/none"
    stdout, stderr = _run(wrong, "sync", 3, tmp_path)
    failures = [line for line in stderr.splitlines() if "port 9 failed" in line]
    assert int(stdout.strip()) >= 1
    assert failures, stderr
    assert "Connection refused" in failures[0]


def test_quiet_on_stderr_once_logging_is_configured(
    bundle: Bundle, capsys: pytest.CaptureFixture[str], caplog: t.Any
) -> None:
    """With a handler configured (pytest's, here), the fallback stays silent
    and the records go to that handler."""
    with caplog.at_level(logging.WARNING, logger="flask_telemetry"):
        bundle.telemetry.record("no_such_event")
    assert "Unknown event type" in caplog.text
    assert "Unknown event type" not in capsys.readouterr().err


def test_unknown_key_warns_with_the_closest_name(
    make_app: MakeApp, caplog: t.Any
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_telemetry"):
        make_app(TELEMETRY_SYNC_DEADLINE=500, TELEMETRY_SHINY=True)
    assert (
        "TELEMETRY_SYNC_DEADLINE is not a flask_telemetry setting; did you mean "
        "TELEMETRY_SYNC_DEADLINE_MS?" in caplog.text
    )
    assert "TELEMETRY_SHINY is not a flask_telemetry setting" in caplog.text


def test_unknown_event_type_says_how_to_register_one(
    bundle: Bundle, caplog: t.Any
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_telemetry"):
        bundle.telemetry.record("checkout_started")
    assert "Telemetry(event_types=[MyEvents])" in caplog.text
    assert isinstance(bundle.telemetry, Telemetry)
    assert bundle.telemetry.stats()["dropped"]["invalid"] == 1
    bundle.telemetry.record(EventType.CACHE_HIT)
