"""Memory bounded in bytes and record() cheap for any input (issue 11, §2)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import typing as t

import pytest

from conftest import Bundle, MakeApp
from flask_telemetry import ConfigVars, EventType
from flask_telemetry.domain.delivery.background import BackgroundDelivery
from flask_telemetry.domain.delivery.size import pending_bytes
from flask_telemetry.domain.mapping import pending
from flask_telemetry.domain.privacy import Privacy

# One process records 10,000 of the largest events telemetry accepts into
# an async queue whose database is down (nothing listens on the port), and
# prints its RSS growth. In a subprocess: the test process's own memory is
# not a clean baseline.
_MAXIMAL = textwrap.dedent(
    """
    import json, sys
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from flask_telemetry import Telemetry, EventType

    def rss_mib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    app = Flask("bounded")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=sys.argv[1],
        TELEMETRY_DELIVERY="async",
        TELEMETRY_BREAKER_COOLDOWN=60.0,
        TELEMETRY_RECORD_REQUESTS=False,
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connect_timeout": 1}},
    )
    SQLAlchemy(app)
    telemetry = Telemetry(app)

    @app.get("/")
    def view():
        return "ok"

    # Metadata just under the 8 KiB cap, in many small values (the costliest
    # shape in memory), a new dict each time; and an 8 KiB User-Agent.
    def metadata(n):
        return {f"k{n:05d}_{i:03d}": f"v{i:03d}" for i in range(370)}

    agent = "A" * 8192
    with app.test_request_context("/", headers={"User-Agent": agent}):
        app.preprocess_request()
        telemetry.record(EventType.CACHE_MISS, metadata={"warm": 1})
    before = rss_mib()
    with app.test_request_context("/", headers={"User-Agent": agent}):
        app.preprocess_request()  # the request's context, its User-Agent
        for n in range(10_000):
            telemetry.record(EventType.CACHE_MISS, metadata=metadata(n))
    after = rss_mib()
    stats = telemetry.stats()
    size = len(json.dumps(metadata(0)))
    print(json.dumps({"before": before, "after": after, "stats": stats,
                      "metadata_bytes": size}))
    telemetry.shutdown(0.5)
    """
)


@pytest.mark.slow
def test_ten_thousand_maximal_events_with_the_database_down(tmp_path: t.Any) -> None:
    script = tmp_path / "maximal.py"
    script.write_text(_MAXIMAL)
    down = "postgresql+psycopg://postgres@127.0.0.1:9/none"  # nothing listens
    result = subprocess.run(
        [sys.executable, str(script), down],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    grown = report["after"] - report["before"]
    stats = report["stats"]
    print(
        f"\nRSS {report['before']:.1f} -> {report['after']:.1f} MiB (+{grown:.1f}) "
        f"for 10,000 events of {report['metadata_bytes']} bytes of metadata; "
        f"{stats}"
    )
    assert 7000 < report["metadata_bytes"] <= 8192  # maximal: just under the cap
    assert grown < 64
    assert stats["accepted"] == 10_001
    assert stats["dropped"]["queue_full"] > 0  # the bound in bytes did its job
    total = stats["written"] + sum(stats["dropped"].values()) + stats["queue_depth"]
    assert stats["accepted"] == total


def test_queue_bound_in_bytes_drops_and_counts(bundle: Bundle) -> None:
    """A queue at TELEMETRY_QUEUE_MAX_BYTES drops the next event as queue_full."""
    store = bundle.telemetry.delivery.store  # type: ignore[attr-defined]
    queue = BackgroundDelivery(
        store,
        bundle.app.extensions["telemetry"].breaker,
        queue_size=10_000,
        max_bytes=200_000,
        batch_size=10_000,
        flush_interval=60.0,
        shutdown_timeout=0.1,
        max_retries=0,
        retry_backoff=0.0,
    )
    event = pending(
        actor_type="system",
        actor_id=None,
        event_type="cache_miss",
        severity="info",
        request_id=None,
        route_name=None,
        ip_address=None,
        user_agent=None,
        metadata={f"key{i}": "x" * 40 for i in range(50)},
        occurred_at=time.time(),
    )
    size = pending_bytes(event)
    assert 4000 < size < 20_000
    before = store.stats.snapshot()["dropped"]["queue_full"]
    kept = 0
    for _ in range(200):
        if queue.put(event, wake=False) is not None:
            kept += 1
    assert kept == 200_000 // size
    assert queue.queued_bytes() <= 200_000
    assert store.stats.snapshot()["dropped"]["queue_full"] - before == 200 - kept
    queue._queue.clear()  # not stored: this queue has no writer thread
    queue.close(0.1)


def test_record_of_a_million_keys_is_cheap(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.DELIVERY: "async"})
    huge = {f"key{i}": i for i in range(1_000_000)}
    wide = {"blob": "x" * (64 * 1024 * 1024)}
    deep: list[t.Any] = [list(range(1000)) for _ in range(1000)]
    with bundle.app.app_context():
        bundle.telemetry.record(EventType.CACHE_MISS, metadata={"warm": True})
        timings = {}
        for name, metadata in (("keys", huge), ("string", wide), ("lists", deep)):
            started = time.perf_counter()
            bundle.telemetry.record(EventType.CACHE_MISS, metadata={"m": metadata})
            timings[name] = time.perf_counter() - started
    rows = bundle.rows()
    print(", ".join(f"{k}: {v * 1000:.2f} ms" for k, v in timings.items()))
    assert all(seconds < 0.05 for seconds in timings.values()), timings
    markers = [r.metadata for r in rows[1:]]
    assert all(m["metadata_truncated"] for m in markers)
    assert all(m["original_bytes_at_least"] > 8192 for m in markers)


def test_the_redaction_cache_keeps_no_large_keys() -> None:
    privacy = Privacy(max_bytes=10**9)
    for i in range(300):
        privacy.metadata({f"{i}" + "k" * 100_000: 1})
    assert sum(len(k) for k in privacy._keys) < 4096 * 64


def test_strings_are_cut_to_their_columns_before_they_are_queued(
    make_app: MakeApp,
) -> None:
    bundle = make_app(**{ConfigVars.DELIVERY: "async"})
    delivery = bundle.telemetry.delivery
    seen: list[t.Any] = []
    original = delivery.deliver

    def spy(queued: t.Any) -> None:
        seen.append(queued)
        original(queued)

    delivery.deliver = spy  # type: ignore[method-assign]
    agent = "Mozilla/5.0 " + "A" * 8192
    with bundle.app.test_request_context("/", headers={"User-Agent": agent}):
        bundle.app.preprocess_request()
        bundle.telemetry.record(EventType.CACHE_MISS)
    # The event and the request's end (user_agent is the 8th value queued).
    assert [queued[7] for queued in seen] == [agent[:512]] * 2
    assert [row.user_agent for row in bundle.rows()] == [agent[:512]] * 2


def test_pending_bytes_counts_text_as_getsizeof_does() -> None:
    """The text fields are counted as sys.getsizeof counts them, ASCII or not."""
    fields: dict[str, t.Any] = {
        "actor_type": "anonymous",
        "actor_id": None,
        "event_type": "cache_miss",
        "severity": "info",
        "metadata": None,
        "occurred_at": 0.0,
    }
    texts = ("request_id", "route_name", "ip_address", "user_agent")
    none: dict[str, t.Any] = dict.fromkeys(texts)
    base = pending(**fields, **none)
    for text in ["0" * 36, "api.hello", "2001:db8::1", "Mozilla/5.0", "é€🚀", ""]:
        for name in texts:
            one: dict[str, t.Any] = {n: (text if n == name else None) for n in texts}
            event = pending(**fields, **one)
            assert pending_bytes(event) - pending_bytes(base) == sys.getsizeof(text)


def _deep_size(value: t.Any) -> int:
    """What ``value`` occupies, by sys.getsizeof, with everything in it."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(_deep_size(k) + _deep_size(v) for k, v in value.items())
    elif isinstance(value, list):
        size += sum(_deep_size(item) for item in value)
    return size


@pytest.mark.parametrize("n", [0, 1, 2, 5, 6, 11, 12, 22, 23, 32, 33, 43, 44, 87, 700])
def test_pending_bytes_of_metadata_is_at_least_what_it_occupies(n: int) -> None:
    """The metadata's estimate (a dict read from its length, its ASCII text
    from its length) stays at or above its sys.getsizeof, and near it."""
    privacy = Privacy(max_bytes=10**9)
    flat = {f"key{i}": f"value:{i}" for i in range(n)}
    shapes: list[dict[str, t.Any]] = [
        flat,
        privacy.metadata(flat),  # copied in one go up to 32 items, else walked
        privacy.metadata({**flat, "n": 7, "f": 2.5, "b": True, "z": None}),
        privacy.metadata({f"clé{i}": "日本語🚀" * (i % 3) for i in range(n)}),
        privacy.metadata({"nested": flat, "list": [flat, list(flat), 1], "": {}}),
    ]
    fields: dict[str, t.Any] = {
        "actor_type": "anonymous",
        "actor_id": None,
        "event_type": "cache_miss",
        "severity": "info",
        "request_id": None,
        "route_name": None,
        "ip_address": None,
        "user_agent": None,
        "occurred_at": 0.0,
    }
    base = pending_bytes(pending(**fields, metadata=None))
    for metadata in shapes:
        counted = pending_bytes(pending(**fields, metadata=metadata)) - base
        occupied = _deep_size(metadata)
        assert occupied <= counted <= 2 * occupied + 256, (n, counted, occupied)
