"""The dashboard's time budget belongs to one request, even when a test holds
an application context (and so one ``g``) around several."""

from __future__ import annotations

import time

import pytest

from conftest import Bundle
from flask_telemetry.dashboard import budget


def test_each_request_has_a_budget_of_its_own(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = bundle.app
    bundle.telemetry.init_dashboard(app, authorize=lambda: True)
    client = app.test_client()
    urls = ("/_telemetry/events", "/_telemetry/")
    for url in urls:  # templates compiled, connections made: outside the count
        assert client.get(url).status_code == 200, url
    monkeypatch.setattr(budget, "PAGE_SECONDS", 2.0)
    started = time.monotonic()
    with app.app_context():
        for _ in range(4):
            for url in urls:
                assert client.get(url).status_code == 200, url
            time.sleep(0.7)
    # Together, the requests took longer than one budget.
    assert time.monotonic() - started > budget.PAGE_SECONDS
