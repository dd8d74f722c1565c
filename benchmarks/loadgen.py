"""A small HTTP load generator, run as its own process by ``benchmarks.realhttp``.

It reads one JSON command per line on stdin, ``{"port": 8000, "requests":
1000, "concurrency": 4, "max_seconds": 3}``, sends that many ``GET /hello`` requests to
127.0.0.1 only (a new connection each, as gunicorn's sync workers close
them) and answers one JSON line: wall seconds, p50 and p99 latency, errors.
Every request has a timeout; the command ends when its count is done.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from .common import percentile

HOST = "127.0.0.1"
REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
TIMEOUT = 10.0


async def _one(port: int) -> tuple[float, bool]:
    began = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, port), TIMEOUT
        )
        writer.write(REQUEST)
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    except (OSError, TimeoutError):
        return time.perf_counter() - began, False
    ok = data.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    return time.perf_counter() - began, ok


async def block(
    port: int, requests: int, concurrency: int, max_seconds: float
) -> dict[str, float]:
    """Send ``requests`` requests with ``concurrency`` in flight.

    No new request starts after ``max_seconds``; the rate counts what ran.
    """
    left = requests
    deadline = time.perf_counter() + max_seconds
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal left, errors
        while left > 0 and (len(latencies) < 20 or time.perf_counter() < deadline):
            left -= 1
            latency, ok = await _one(port)
            latencies.append(latency)
            errors += not ok

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    latencies.sort()
    return {
        "seconds": seconds,
        "n": len(latencies),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "errors": errors,
    }


def main() -> None:
    """Serve commands from stdin until it closes."""
    for line in sys.stdin:
        command = json.loads(line)
        result = asyncio.run(
            block(
                int(command["port"]),
                int(command["requests"]),
                int(command.get("concurrency", 4)),
                float(command.get("max_seconds", 60.0)),
            )
        )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
