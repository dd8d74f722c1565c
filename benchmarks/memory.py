"""RSS after many events, with the database healthy and with it unreachable.

Each scenario runs in a fresh process: ``python -m benchmarks.memory
healthy|down URL EVENTS`` prints one JSON line. Healthy records in chunks
that fit the default queue and flushes between them (nothing is dropped);
down points the app at a closed port and records without pause, so the
queue fills and every further event is dropped as ``queue_full``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from .common import closed_port_url, rss_mb

CHUNK = 5000


def measure(scenario: str, url: str, events: int) -> dict[str, object]:
    """Run one scenario in this process."""
    from flask_telemetry import EventType

    from .apps import Variant, build
    from .ingest import METADATA, USER_AGENT

    built = build(Variant(kind="async", db="postgresql"), url, create=False)
    app, telemetry = built.app, built.telemetry
    assert telemetry is not None
    app.extensions["telemetry"].delivery.shutdown_timeout = 1.0
    with app.test_request_context("/hello", headers={"User-Agent": USER_AGENT}):
        app.preprocess_request()
        telemetry.record(EventType.CACHE_MISS, metadata=METADATA)
        telemetry.flush(2.0 if scenario == "healthy" else 0.2)
        before = rss_mb()
        recording = 0.0
        for start in range(0, events, CHUNK):
            began = time.perf_counter()
            for _ in range(min(CHUNK, events - start)):
                telemetry.record(EventType.CACHE_MISS, metadata=METADATA)
            recording += time.perf_counter() - began
            if scenario == "healthy":
                telemetry.flush(60.0)
        after = rss_mb()
        stats = telemetry.stats()
        telemetry.shutdown(1.0)
    return {
        "rss_before_mb": before,
        "rss_after_mb": after,
        "record_s": recording / events,
        "written": stats.get("written"),
        "dropped": stats.get("dropped"),
        "queue_depth": stats.get("queue_depth"),
    }


def run(postgres_url: str, events: int) -> dict[str, dict[str, object]]:
    """Both scenarios, each in its own process."""
    results = {}
    for scenario, url in (("healthy", postgres_url), ("down", closed_port_url())):
        command = [sys.executable, "-m", "benchmarks.memory", scenario, url]
        output = subprocess.run(
            [*command, str(events)], check=True, capture_output=True, text=True
        ).stdout
        results[scenario] = json.loads(output.strip().splitlines()[-1])
    return results


if __name__ == "__main__":
    name, target, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(measure(name, target, count)))
