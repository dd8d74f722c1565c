"""Events recorded in multiprocessing children (fork) are stored (issue 11, §4).

A ``multiprocessing`` child ends with ``os._exit``: ``atexit`` never runs
there, so telemetry flushes on multiprocessing's own exit path
(``multiprocessing.util.Finalize``).
"""

from __future__ import annotations

import multiprocessing
import typing as t

import pytest

from conftest import MakeApp
from flask_telemetry import ConfigVars, EventType, Telemetry

pytestmark = [
    pytest.mark.slow,
    # Python 3.12 warns when a process with threads (pytest's, telemetry's
    # writers) forks; forking such a process is what this test is about.
    pytest.mark.filterwarnings(
        "ignore:This process .* is multi-threaded:DeprecationWarning"
    ),
]

_current: dict[str, t.Any] = {}


def _record(label: str, count: int = 1) -> int:
    app = _current["app"]
    telemetry: Telemetry = _current["telemetry"]
    with app.app_context():
        for i in range(count):
            telemetry.record(EventType.WORKER_JOB_END, metadata={"by": label, "i": i})
    return count


@pytest.mark.parametrize("delivery", ["async", "sync"])
def test_process_and_pool_children_store_their_events(
    make_app: MakeApp, delivery: str
) -> None:
    bundle = make_app(
        **{
            ConfigVars.DELIVERY: delivery,
            ConfigVars.RECORD_REQUESTS: False,
            ConfigVars.FLUSH_INTERVAL: 5.0,  # nothing written before the exit
        }
    )
    _current.update(app=bundle.app, telemetry=bundle.telemetry)
    _record("parent")  # the parent's writer is running when it forks
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=_record, args=(f"process{n}", 20)) for n in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    pool = context.Pool(3)
    try:
        assert sum(pool.starmap(_record, [(f"task{n}", 5) for n in range(8)])) == 40
        pool.close()  # workers exit through multiprocessing's exit path
        pool.join()
    finally:
        pool.terminate()
    rows = bundle.rows()
    by: dict[str, int] = {}
    for row in rows:
        by[row.metadata["by"]] = by.get(row.metadata["by"], 0) + 1
    print(f"\n{delivery}: {len(rows)} rows: {by}")
    assert by.pop("parent") == 1
    assert by.pop("process0") == by.pop("process1") == 20
    assert sum(by.values()) == 40
    with bundle.app.app_context():
        assert bundle.telemetry.stats()["written"] == 1  # the parent's own only
