"""Headless Chromium and a real local server, for the tests that drive pages.

Chromium is Debian's ``/usr/bin/chromium`` (``apt-get install chromium``),
driven by Playwright without its own browser downloads. When
``TELEMETRY_TEST_CHROMIUM`` is set (``.ci/run`` sets it) the browser must
start or the tests fail; without it they run when ``/usr/bin/chromium`` is
there and are skipped, with the reason shown, when it is not.

A test module takes the ``browser`` fixture by importing it.
"""

from __future__ import annotations

import os
import threading
import typing as t

import pytest
from flask import Flask
from werkzeug.serving import make_server

if t.TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM_ENV = "TELEMETRY_TEST_CHROMIUM"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
]


@pytest.fixture(scope="module")
def browser() -> t.Iterator[Browser]:
    path = os.environ.get(CHROMIUM_ENV)
    if not path:
        if not os.path.exists(DEBIAN_CHROMIUM):
            pytest.skip(f"{DEBIAN_CHROMIUM} is missing and {CHROMIUM_ENV} is not set")
        pytest.importorskip("playwright", reason="the test extra is not installed")
        path = DEBIAN_CHROMIUM
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=ARGS)
        yield chromium
        chromium.close()


def serve(app: Flask) -> t.Iterator[str]:
    """``app`` served on a free port of 127.0.0.1 while the iteration lasts."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
