"""Where the time goes: the cost of each step of the async hot path, and
pyinstrument profiles of the request path and of the writer's batch work.

The steps are timed one by one, in a loop, in microseconds per event of CPU
wall time on this machine; compare them with the bare request measured in
the same run. They reach into flask_telemetry's internals (the extension
state, recorder, delivery and writer): a step whose internals changed shows
as ``n/a`` instead of failing the run.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import time
import typing as t

from flask import g

from flask_telemetry import EventType
from flask_telemetry.storage import row as ev

from .apps import Variant, build
from .common import Urls
from .ingest import METADATA, USER_AGENT

BATCH = 500

#: Metadata whose walk once cost milliseconds (many small items under the
#: 8 KiB cap), timed through record().
SHAPES: dict[str, dict[t.Any, t.Any]] = {
    "2,041 empty dicts": {"l": [{} for _ in range(2041)]},
    "2,041 empty lists": {"l": [[] for _ in range(2041)]},
    "580 int keys": {i: 0 for i in range(580)},
    "1,600 ints (over the cap)": {"l": list(range(1600))},
    "580 int keys and values": {i: i for i in range(580)},
    "900 one-item dicts": {"l": [{"": 0}] * 900},
    "800 one-item lists": {"l": [[1]] * 800},
    "400 dicts six deep": {"l": [[[[[[{}]]]]]] * 400},
    # What the copy changes, beside many containers: redaction and controls.
    "a key to redact and 900 dicts": {"password": "x", "l": [{"": 0}] * 900},
    "a control and 800 lists": {"x": "a\x00b", "l": [[1]] * 800},
    "900 keys to redact": {"l": [{"token": "t"}] * 900},
}


def _per_call(call: t.Callable[[], object], repeat: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - start) / repeat * 1e6


def steps(urls: Urls, repeat: int) -> list[tuple[str, float | None]]:
    """Microseconds per call of each step, best of three loops."""
    bare = build(Variant(kind="bare"), None).app.test_client()
    built = build(Variant(kind="async-idle", db="sqlite"), urls.sqlite("breakdown"))
    app, telemetry = built.app, built.telemetry
    assert telemetry is not None
    client = app.test_client()
    state: t.Any = app.extensions["telemetry"]
    out: list[tuple[str, float | None]] = []

    def best(label: str, call: t.Callable[[], object], count: int = repeat) -> None:
        try:
            call()
            value: float | None = min(_per_call(call, count) for _ in range(3))
        except Exception as exc:  # internals moved: report, do not fail
            print(f"  breakdown: {label}: n/a ({exc!r})")
            value = None
        out.append((label, value))
        built.settle()

    best("bare request (reference)", lambda: bare.get("/hello"), repeat // 4)
    best(
        "request with telemetry, writer idle", lambda: client.get("/hello"), repeat // 4
    )
    with app.test_request_context("/hello", headers={"User-Agent": USER_AGENT}):
        app.preprocess_request()
        request = state.request
        recorder = state.recorder
        delivery = state.delivery
        writer = delivery.store.writer
        before_request, _, teardown_request = request._hooks()
        best("  before_request hook (RequestContext)", before_request)
        ctx = g.__dict__["_telemetry"]

        def teardown() -> None:
            ctx.finished = False  # the same request's end, recorded again
            teardown_request(None)

        best("  teardown hook: http_request_end end to end", teardown)
        best(
            "  record(): public call end to end",
            lambda: telemetry.record(EventType.CACHE_MISS, metadata=METADATA),
        )
        for name, shape in SHAPES.items():
            best(
                f"  record(): metadata of {name}",
                lambda shape=shape: telemetry.record(
                    EventType.CACHE_MISS, metadata=shape
                ),
                repeat // 8,
            )
        from flask_telemetry.domain.mapping import build_event

        values = (
            EventType.CACHE_MISS,
            "info",
            "anonymous",
            None,
            METADATA,
            "0" * 36,
            "hello",
            "127.0.0.1",
            USER_AGENT,
        )
        best(
            "    Recorder._check: checks, metadata copy, pending tuple",
            lambda: recorder._check(*values),
        )
        pending = recorder._check(*values)
        best(
            "    delivery.deliver: enqueue",
            lambda: delivery.deliver(pending),
        )
        built.settle()
        best("  writer: build_event, per event", lambda: build_event(pending))
        event = ev.TraceEvent(
            actor_type="anonymous",
            event_type="cache_miss",
            severity="info",
            request_id="0" * 36,
            route_name="hello",
            ip_address="127.0.0.1",
            user_agent=USER_AGENT,
            metadata=dict(METADATA),
            occurred_at=dt.datetime.now(dt.UTC),
        )
        events = [event] * BATCH
        best("  writer: validate, per event", lambda: writer.validate(events), 20)
        out[-1] = (out[-1][0], None if out[-1][1] is None else out[-1][1] / BATCH)
        best("    as_row, per event", lambda: ev.as_row(event))
        good, _ = writer.validate(events)
        best("  writer: insert, per row (SQLite)", lambda: writer.insert(good), 10)
        out[-1] = (out[-1][0], None if out[-1][1] is None else out[-1][1] / BATCH)
    with app.app_context():
        telemetry.shutdown(5.0)
    return out


def profiles(urls: Urls, folder: str, requests: int) -> list[str]:
    """pyinstrument text profiles of the request path and of the writer's work."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return []
    os.makedirs(folder, exist_ok=True)
    built = build(
        Variant(kind="async-idle", db="sqlite", extra=True), urls.sqlite("profile")
    )
    app, telemetry = built.app, built.telemetry
    assert telemetry is not None
    client = app.test_client()
    written = []
    profiler = Profiler(interval=0.0001)
    with profiler:
        for _ in range(requests):
            client.get("/hello")
    path = os.path.join(folder, "profile-request-path.txt")
    with open(path, "w") as out:
        out.write(profiler.output_text(unicode=True, show_all=False))
    written.append(path)
    # The writer's work (validate, insert), run on this thread so that the
    # profiler sees it, through the storage layer's TraceWriter.
    delivery: t.Any = app.extensions["telemetry"].delivery
    writer = delivery.store.writer
    from flask_telemetry.domain.mapping import build_event

    queued = list(delivery._queue)
    delivery._queue.clear()
    profiler = Profiler(interval=0.0001)
    with profiler:
        for start in range(0, len(queued), BATCH):
            events = [build_event(p) for p in queued[start : start + BATCH]]
            good, _ = writer.validate(events)
            writer.insert(good)
    path = os.path.join(folder, "profile-writer.txt")
    with open(path, "w") as out:
        out.write(profiler.output_text(unicode=True, show_all=False))
    written.append(path)
    with app.app_context():
        telemetry.shutdown(5.0)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.breakdown [--repeat N]``: the hot-path table
    alone (SQLite only, in a scratch folder), as ``make bench`` prints it."""
    import argparse
    import tempfile

    from .run import breakdown_table

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.breakdown", description=main.__doc__
    )
    parser.add_argument("--repeat", type=int, default=4000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flask_telemetry_breakdown_") as workdir:
        urls = Urls(workdir=workdir, postgres="", mariadb="")
        print(breakdown_table(steps(urls, args.repeat)).rst())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
