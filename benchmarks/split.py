"""Where the request path's time goes, measured in place.

``python -m benchmarks.split [--rounds N] [--requests N]`` builds the bare
app and apps that add one piece at a time: Flask-SQLAlchemy (which every
flask_telemetry application has), three no-op hooks, flask_telemetry's
``before_request`` alone, its ``before_request`` and ``after_request``
(``TELEMETRY_RECORD_REQUESTS = False``), everything but the enqueue of
``http_request_end``, and the whole request path with an idle writer. Each
block of requests runs between two bare blocks, and its cost is the main
thread's CPU time (``time.thread_time``) per request over theirs, so the
other processes on a shared machine count less than in wall time.

Timed one by one in a loop, the hooks cost a third of what they cost inside
real requests, where the rest of Flask has pushed them out of the CPU's
caches; this split is the in-place figure. It reaches into flask_telemetry's
internals for two of the steps and shows ``n/a`` for them if those moved.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import tempfile
import time
import typing as t

from flask import Flask, Response
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import Telemetry


def _base() -> Flask:
    app = Flask(__name__)

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def _with_sqlalchemy(url: str) -> Flask:
    app = _base()
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    SQLAlchemy(app)
    return app


def _noop_hooks(url: str) -> Flask:
    app = _with_sqlalchemy(url)

    def before() -> None:
        return None

    def after(response: Response) -> Response:
        return response

    def teardown(exc: BaseException | None) -> None:
        return None

    app.before_request(before)
    app.after_request(after)
    app.teardown_request(teardown)
    return app


def _telemetry(url: str, **config: t.Any) -> Flask:
    app = _base()
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    # The writer sleeps through the blocks: the request path alone.
    app.config.update(
        TELEMETRY_FLUSH_INTERVAL=3600.0,
        TELEMETRY_BATCH_SIZE=10_000_000,
        TELEMETRY_QUEUE_SIZE=10_000_000,
        **config,
    )
    db = SQLAlchemy(app)
    Telemetry(app)
    with app.app_context():
        db.create_all()
    return app


def _before_only(url: str) -> Flask:
    app = _telemetry(url, TELEMETRY_RECORD_REQUESTS=False)
    app.after_request_funcs[None].clear()
    app.teardown_request_funcs[None].clear()
    return app


def _no_enqueue(url: str) -> Flask:
    app = _telemetry(url)
    delivery: t.Any = app.extensions["telemetry"].delivery
    delivery.deliver = lambda pending: None  # internals: n/a if moved
    return app


STEPS: list[tuple[str, t.Callable[[str], Flask]]] = [
    ("+ Flask-SQLAlchemy", _with_sqlalchemy),
    ("+ three no-op hooks", _noop_hooks),
    ("flask_telemetry, before_request only", _before_only),
    (
        "flask_telemetry, before + after_request",
        lambda url: _telemetry(url, TELEMETRY_RECORD_REQUESTS=False),
    ),
    ("flask_telemetry, all but the enqueue", _no_enqueue),
    ("flask_telemetry, request path (writer idle)", _telemetry),
]


def run(rounds: int, requests: int) -> list[tuple[str, float, float, float, float]]:
    """(step, median ratio, 25th, 75th percentile, median extra us/request)."""
    folder = tempfile.mkdtemp(prefix="flask_telemetry_split_")
    clients = {"bare": _base().test_client()}
    for index, (label, make) in enumerate(STEPS):
        try:
            url = f"sqlite:///{os.path.join(folder, f'{index}.db')}"
            clients[label] = make(url).test_client()
        except Exception as exc:  # internals moved: report, do not fail
            print(f"  split: {label}: n/a ({exc!r})")

    def block(key: str) -> float:
        client = clients[key]
        start = time.thread_time()
        for _ in range(requests):
            client.get("/hello")
        return (time.thread_time() - start) / requests

    for client in clients.values():
        for _ in range(200):
            client.get("/hello")
    labels = [label for label in clients if label != "bare"]
    ratios: dict[str, list[float]] = {label: [] for label in labels}
    extra: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(rounds):
        random.shuffle(labels)
        gc.collect()
        before = block("bare")
        for label in labels:
            mine = block(label)
            after = block("bare")
            bare = (before + after) / 2
            ratios[label].append(bare / mine)
            extra[label].append((mine - bare) * 1e6)
            before = after
    out = []
    for label, _ in STEPS:
        if label not in ratios:
            continue
        values = sorted(ratios[label])
        quartile = len(values) // 4
        out.append(
            (
                label,
                statistics.median(values),
                values[quartile],
                values[-1 - quartile],
                statistics.median(extra[label]),
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.split", description=__doc__
    )
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args(argv)
    print(
        f"{'step':46s}  {'vs bare (CPU)':22s}  extra us/request  "
        f"({args.rounds} rounds of {args.requests} requests)"
    )
    for label, median, low, high, extra in run(args.rounds, args.requests):
        print(f"{label:46s}  {median:.3f} ({low:.3f}-{high:.3f})   {extra:+8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
