"""The pytest plugin of flask_telemetry, registered as a ``pytest11`` entry point.

Installing flask-telemetry makes the ``telemetry_capture`` fixture available
to every test suite; it needs the application under test as a fixture named
``app`` (the convention of pytest-flask and of Flask's own tutorial)::

    from flask_telemetry import EventType

    def test_login_failure_is_traced(client, telemetry_capture):
        client.post("/login", data={"user": "ada", "password": "wrong"})
        telemetry_capture.assert_recorded(EventType.AUTH_LOGIN_FAILURE)
"""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask

from .testing import TelemetryCapture, capture


@pytest.fixture
def telemetry_capture(app: Flask) -> t.Iterator[TelemetryCapture]:
    """Capture the events ``app`` records during the test, without a database.

    See :func:`flask_telemetry.testing.capture`.
    """
    with capture(app) as captured:
        yield captured
