"""The application under test, bare and with each tracer, built the same way.

One JSON route, ``/hello``. Each :class:`Variant` adds one tracer; ``extra``
adds one application event per request: a ``record()`` for flask_telemetry,
a child span for OpenTelemetry (Flask-MonitoringDashboard has no such API).

``python -m benchmarks.apps prepare`` creates the tables of the variant named
in the environment, and ``benchmarks.apps:wsgi()`` is the gunicorn factory.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import typing as t

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import EventType, Telemetry


@dataclasses.dataclass(frozen=True, kw_only=True)
class Variant:
    """One configuration of the app.

    ``kind`` is ``bare``, ``sqla`` (bare plus Flask-SQLAlchemy, which
    flask_telemetry needs: a reference), ``sync``, ``async`` (default
    settings: the writer catches up inside the timed block), ``async-idle``
    (the writer waits until after the block: the request path alone),
    ``otel`` or ``fmd``.
    """

    kind: str
    db: str | None = None
    extra: bool = False

    @property
    def key(self) -> str:
        """A short unique name, used in file names and the environment."""
        parts = [self.kind, self.db or "", "extra" if self.extra else ""]
        return "-".join(p for p in parts if p)

    @property
    def label(self) -> str:
        """How the variant is named in the tables."""
        names = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}
        db = names.get(self.db or "", "")
        if self.kind == "bare":
            return "bare Flask"
        if self.kind == "sqla":
            return "bare Flask + Flask-SQLAlchemy (no tracer; reference)"
        if self.kind == "sync":
            return f"flask_telemetry sync, {db}"
        if self.kind == "async":
            return f"flask_telemetry async, {db}, saturated"
        if self.kind == "async-idle":
            return f"flask_telemetry async, {db}, request path"
        if self.kind == "otel":
            return "OpenTelemetry, BatchSpanProcessor, no-op exporter"
        return "Flask-MonitoringDashboard level 1, SQLite"

    @property
    def short(self) -> str:
        """A compact label for the chart."""
        db = {"sqlite": "SQLite", "postgresql": "PG", "mariadb": "MariaDB"}.get(
            self.db or "", ""
        )
        return {
            "bare": "bare",
            "sqla": "+ Flask-SQLAlchemy",
            "sync": f"sync {db}",
            "async": f"async {db} sat.",
            "async-idle": f"async {db} path",
            "otel": "OpenTelemetry",
            "fmd": "FMD level 1",
        }[self.kind]


@dataclasses.dataclass(kw_only=True)
class Built:
    """An app ready to serve, with what to do around a timed block.

    ``drain`` runs inside the timed block, after the requests: the tracer's
    background work that the block caused. ``settle`` runs after the timer
    stopped (the idle writer's flush).
    """

    app: Flask
    drain: t.Callable[[], None]
    settle: t.Callable[[], None]
    telemetry: Telemetry | None = None

    def writer_ident(self) -> int | None:
        """The ident of this app's telemetry writer thread, once it runs."""
        if self.telemetry is None:
            return None
        delivery = self.app.extensions["telemetry"].delivery
        # Sync delivery hands its events to a background writer of its own.
        thread = getattr(getattr(delivery, "_writer", delivery), "_thread", None)
        return None if thread is None else thread.ident


def _nothing() -> None:
    pass


def _base(extra_call: t.Callable[[], None] | None) -> Flask:
    app = Flask(__name__)

    @app.get("/hello")
    def hello() -> dict[str, str]:
        if extra_call is not None:
            extra_call()
        return {"hello": "world"}

    return app


def build(
    variant: Variant,
    url: str | None,
    *,
    create: bool = True,
    config: t.Mapping[str, t.Any] | None = None,
) -> Built:
    """Build the app of ``variant``; its tracer stores into ``url``.

    ``config`` adds ``TELEMETRY_*`` settings to a flask_telemetry variant.
    """
    if variant.kind == "bare":
        return Built(app=_base(None), drain=_nothing, settle=_nothing)
    if variant.kind == "sqla":
        # What every flask_telemetry user already runs: Flask-SQLAlchemy
        # removes its session at the end of each request.
        app = _base(None)
        app.config["SQLALCHEMY_DATABASE_URI"] = url
        SQLAlchemy(app)
        return Built(app=app, drain=_nothing, settle=_nothing)
    if variant.kind in ("sync", "async", "async-idle"):
        assert url is not None
        return _telemetry_app(variant, url, create=create, config=config or {})
    if variant.kind == "otel":
        return _otel_app(variant)
    assert url is not None
    return _fmd_app(url)


def _telemetry_app(
    variant: Variant, url: str, *, create: bool, config: t.Mapping[str, t.Any]
) -> Built:
    telemetry = Telemetry()

    def extra() -> None:
        telemetry.record(EventType.CACHE_MISS, metadata={"key": "user:42"})

    app = _base(extra if variant.extra else None)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config["TELEMETRY_DELIVERY"] = "sync" if variant.kind == "sync" else "async"
    if variant.kind == "async-idle":
        # The writer sleeps through the timed block: only the request path counts.
        app.config["TELEMETRY_FLUSH_INTERVAL"] = 3600.0
        app.config["TELEMETRY_BATCH_SIZE"] = 10_000_000
        app.config["TELEMETRY_QUEUE_SIZE"] = 10_000_000
    app.config.update(config)
    db = SQLAlchemy()
    db.init_app(app)
    telemetry.init_app(app)
    if create:
        with app.app_context():
            db.create_all()

    def flush() -> None:
        with app.app_context():
            telemetry.flush(120.0)

    if variant.kind == "async-idle":
        return Built(app=app, drain=_nothing, settle=flush, telemetry=telemetry)
    return Built(app=app, drain=flush, settle=_nothing, telemetry=telemetry)


def _otel_app(variant: Variant) -> Built:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DropExporter(SpanExporter):
        """Accepts every span and does nothing with it."""

        def export(self, spans: t.Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    tracer = provider.get_tracer("benchmarks")

    def extra() -> None:
        with tracer.start_as_current_span("cache_miss", attributes={"key": "user:42"}):
            pass

    app = _base(extra if variant.extra else None)
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument_app(  # type: ignore[no-untyped-call]
        app, tracer_provider=provider
    )

    def drain() -> None:
        provider.force_flush()

    return Built(app=app, drain=drain, settle=_nothing)


def _fmd_app(url: str) -> Built:
    # Flask-MonitoringDashboard keeps its configuration and engine in module
    # globals: one dashboard per process, configured before its first import.
    import flask_monitoringdashboard as dashboard  # type: ignore[import-untyped]

    app = _base(None)
    app.secret_key = "benchmark"
    dashboard.config.database_name = url
    dashboard.config.monitor_level = 1
    dashboard.bind(app, schedule=False)

    def drain() -> None:
        # Level 1 starts one thread per request that writes to the database.
        for thread in threading.enumerate():
            if type(thread).__name__.endswith("Profiler"):
                thread.join(30.0)

    return Built(app=app, drain=drain, settle=_nothing)


def from_env() -> tuple[Variant, str | None]:
    """The variant and URL that ``benchmarks.realhttp`` passes to a server."""
    kind = os.environ["BENCH_KIND"]
    db = os.environ.get("BENCH_DB") or None
    extra = os.environ.get("BENCH_EXTRA") == "1"
    return Variant(kind=kind, db=db, extra=extra), os.environ.get("BENCH_URL")


def wsgi() -> Flask:
    """gunicorn factory: ``gunicorn 'benchmarks.apps:wsgi()'``."""
    variant, url = from_env()
    return build(variant, url, create=False).app


if __name__ == "__main__":
    if sys.argv[1:] == ["prepare"]:
        variant, url = from_env()
        build(variant, url, create=True)
    else:
        raise SystemExit("usage: python -m benchmarks.apps prepare")
