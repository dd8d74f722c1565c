"""Overhead per request through the Flask test client, all apps in one process."""

from __future__ import annotations

import gc
import time

from .apps import Built, Variant, build
from .common import Block, Relative, Urls, interleaved, percentile, thread_cpu

DATABASES = ("sqlite", "postgresql", "mariadb")


def variants() -> list[Variant]:
    """Every configuration of the main table, in table order (bare excluded)."""
    out: list[Variant] = [Variant(kind="sqla", db="sqlite")]
    for extra in (False, True):
        out += [
            Variant(kind="sync", db=db, extra=extra) for db in ("sqlite", "postgresql")
        ]
        out += [Variant(kind="async-idle", db=db, extra=extra) for db in DATABASES]
        out += [Variant(kind="async", db=db, extra=extra) for db in DATABASES]
        out.append(Variant(kind="otel", extra=extra))
    out.append(Variant(kind="fmd", db="sqlite"))
    return out


def url_for(variant: Variant, urls: Urls, prefix: str) -> str | None:
    """Where ``variant`` stores: its own SQLite file, or the run's server DBs."""
    if variant.db is None:
        return None
    return urls.for_db(variant.db, f"{prefix}-{variant.key}")


def timed(built: Built, requests: int, max_seconds: float = 60.0) -> Block:
    """Serve ``requests`` requests, then the tracer's catch-up, on the clock.

    The block stops early after ``max_seconds``; the rate counts what ran.
    The CPU time of this thread and of telemetry's writer thread is taken
    over the same span.
    """
    client = built.app.test_client()
    latencies = []
    errors = 0
    gc.collect()
    writer = built.writer_ident()
    clock = time.perf_counter
    main0, writer0 = time.thread_time(), thread_cpu(writer)
    start = clock()
    deadline = start + max_seconds
    done = 0
    while done < requests and (done < 20 or clock() < deadline):
        done += 1
        began = clock()
        response = client.get("/hello")
        latencies.append(clock() - began)
        if response.status_code != 200:
            errors += 1
    built.drain()
    seconds = clock() - start
    main_cpu = time.thread_time() - main0
    writer_cpu = thread_cpu(writer) - writer0
    built.settle()
    latencies.sort()
    return Block(
        seconds=seconds,
        n=done,
        p50=percentile(latencies, 0.5),
        p99=percentile(latencies, 0.99),
        errors=errors,
        main_cpu=main_cpu,
        writer_cpu=writer_cpu,
    )


def run(
    urls: Urls, *, rounds: int, requests: int, max_seconds: float
) -> tuple[list[Variant], dict[str, list[Relative]], list[Block]]:
    """Build every variant, warm it up, and run the interleaved rounds."""
    chosen = variants()
    apps: dict[str | None, Built] = {None: build(Variant(kind="bare"), None)}
    for variant in chosen:
        apps[variant.key] = build(variant, url_for(variant, urls, "inproc"))
    for built in apps.values():
        timed(built, 50)

    def block(key: str | None) -> Block:
        result = timed(apps[key], requests, max_seconds)
        if result.errors:
            raise RuntimeError(f"{key}: {result.errors} requests failed")
        return result

    ratios, bares = interleaved([v.key for v in chosen], rounds, block)
    for built in apps.values():
        if built.telemetry is not None:
            with built.app.app_context():
                built.telemetry.shutdown(5.0)
    _stop_dashboard()
    return chosen, ratios, bares


def _stop_dashboard() -> None:
    """Write Flask-MonitoringDashboard's cache now, while its database exists."""
    import atexit
    import sys

    if "flask_monitoringdashboard.core.cache" in sys.modules:
        from flask_monitoringdashboard.core.cache import (  # type: ignore[import-untyped]
            flush_cache,
        )

        flush_cache()
        atexit.unregister(flush_cache)
