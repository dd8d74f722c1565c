"""What the writer's pauses (``flask_telemetry.storage.pacing``) do to requests.

``python -m benchmarks.pacing [--db sqlite,postgresql,mariadb] [--rounds 8]``
(about 2 minutes, not part of ``make bench``).

One async app per database (default settings, one ``record()`` per request)
serves ``GET /hello`` through the test client from one thread; after each
request that thread waits 200 µs off the GIL, as a server thread does on its
socket, so that the writer thread works between requests as it does in a
real server. The writer either pauses every ``SLICE`` rows (as shipped) or
never (``SLICE`` set out of reach); the two alternate block by block,
several rounds. Printed: the medians of requests per second and of the
requests' p50, p99 and p99.9 latency (the wait excluded), paced over unpaced.
"""

from __future__ import annotations

import argparse
import statistics
import time
import typing as t

from flask_telemetry.storage import pacing

from .apps import Built, Variant, build
from .common import databases, percentile
from .inprocess import url_for

#: Seconds per block, and the wait after each request.
BLOCK = 2.0
WAIT = 0.0002
_MEASURES = ("rate", "p50", "p99", "p99.9")


#: The slice as shipped, and one no batch reaches.
SHIPPED = pacing.SLICE
NEVER = 1 << 62


def _slice(rows: int) -> None:
    pacing.SLICE = rows


def _block(built: Built) -> tuple[float, float, float, float]:
    """Requests per second, p50, p99 and p99.9 latency of one block."""
    client = built.app.test_client()
    latencies = []
    clock = time.perf_counter
    start = clock()
    end = start + BLOCK
    while clock() < end:
        began = clock()
        client.get("/hello")
        latencies.append(clock() - began)
        time.sleep(WAIT)
    built.drain()
    seconds = clock() - start
    latencies.sort()
    return (
        len(latencies) / seconds,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        percentile(latencies, 0.999),
    )


def run(dbs: t.Sequence[str], rounds: int) -> dict[str, dict[str, float]]:
    """Per database: paced over unpaced medians of rate, p50 and p99."""
    out: dict[str, dict[str, float]] = {}
    with databases() as urls:
        for db in dbs:
            variant = Variant(kind="async", db=db, extra=True)
            built = build(variant, url_for(variant, urls, "pacing"))
            _block(built)  # warm-up
            ratios: dict[str, list[float]] = {k: [] for k in _MEASURES}
            try:
                for number in range(rounds):
                    order = [SHIPPED, NEVER]
                    if number % 2:
                        order.reverse()
                    measured = {}
                    for rows in order:
                        _slice(rows)
                        measured[rows] = _block(built)
                    paced, unpaced = measured[SHIPPED], measured[NEVER]
                    for index, key in enumerate(_MEASURES):
                        ratios[key].append(paced[index] / unpaced[index])
            finally:
                _slice(SHIPPED)
                assert built.telemetry is not None
                with built.app.app_context():
                    built.telemetry.shutdown(5.0)
            out[db] = {key: statistics.median(v) for key, v in ratios.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pacing")
    parser.add_argument("--db", default="sqlite,postgresql,mariadb")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    results = run(args.db.split(","), args.rounds)
    print(f"paced (every {SHIPPED} rows) over unpaced, medians:")
    for db, ratio in results.items():
        print(
            f"{db:12} requests/s {ratio['rate']:.3f}  "
            f"p50 {ratio['p50']:.2f}  p99 {ratio['p99']:.2f}  "
            f"p99.9 {ratio['p99.9']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
