"""A small application, a threaded server and a load driver for the delivery tests.

``create_app()`` is what gunicorn serves (``"fault_app:create_app()"``),
configured by the environment:

- ``FT_DB_URL``: the database URL;
- ``FT_CONFIG``: a JSON object of ``TELEMETRY_*`` (or other Flask) settings;
- ``FT_STATS_DIR``: where each process writes its final ``telemetry.stats()``
  as ``stats-<pid>.json`` when it exits, after telemetry's own exit flush.

``GET /event?seq=N`` records one ``cache_miss`` event with ``{"seq": N}`` and
answers 201, so a test can tell the view's own answer from any other.

``python fault_app.py load URL COUNT THREADS`` sends ``COUNT`` requests
``URL?seq=0..COUNT-1`` from ``THREADS`` threads and prints a JSON summary.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import contextlib
import http.client
import json
import os
import sys
import threading
import time
import typing as t
import urllib.parse

from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy
from werkzeug.serving import make_server

from flask_telemetry import EventType, Telemetry


def create_app() -> Flask:
    """The application gunicorn serves; see the module docstring."""
    app = Flask("fault_app")
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["FT_DB_URL"]
    app.config.update(json.loads(os.environ.get("FT_CONFIG", "{}")))
    db = SQLAlchemy(app)
    stats_dir = os.environ.get("FT_STATS_DIR")
    # Registered before Telemetry: atexit runs hooks last-in first-out, so
    # this runs after telemetry's own exit flush and sees the final counts.
    telemetry = Telemetry()
    if stats_dir:
        atexit.register(_dump_stats, app, telemetry, stats_dir)
    telemetry.init_app(app)
    add_event_view(app, telemetry)
    app.extensions["fault_app_db"] = db
    return app


def add_event_view(app: Flask, telemetry: Telemetry) -> None:
    """``GET /event?seq=N&n=K``: record K (default 1) events, answer 201."""

    @app.get("/event")
    def event() -> tuple[str, int]:
        seq = request.args.get("seq", "0")
        for i in range(int(request.args.get("n", "1"))):
            telemetry.record(EventType.CACHE_MISS, metadata={"seq": seq, "i": i})
        return "recorded", 201


def _dump_stats(app: Flask, telemetry: Telemetry, stats_dir: str) -> None:
    with app.app_context():
        stats = telemetry.stats()
    path = os.path.join(stats_dir, f"stats-{os.getpid()}.json")
    with open(path, "w") as file:
        json.dump(stats, file)


@contextlib.contextmanager
def serve(app: Flask) -> t.Iterator[str]:
    """Serve ``app`` on 127.0.0.1 from a thread (a thread per request); yield
    its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def get(url: str, timeout: float = 30) -> tuple[int, float]:
    """GET ``url`` on a new connection; return (status, seconds)."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    started = time.perf_counter()
    host = parts.hostname or "127.0.0.1"
    conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()


def load(url: str, count: int, threads: int) -> dict[str, t.Any]:
    """Send ``url?seq=i`` for i in range(count) from ``threads`` threads."""
    separator = "&" if "?" in url else "?"

    def one(i: int) -> tuple[int, float]:
        try:
            return get(f"{url}{separator}seq={i}")
        except OSError:
            return 0, 0.0

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, range(count)))
    statuses = collections.Counter(str(status) for status, _ in results)
    latencies = sorted(seconds for _, seconds in results)
    return {
        "statuses": dict(statuses),
        "median": latencies[len(latencies) // 2],
        "max": latencies[-1],
    }


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "load":
        sys.exit("usage: fault_app.py load URL COUNT THREADS")
    print(json.dumps(load(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
