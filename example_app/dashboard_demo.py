"""Demo data for the dashboard, and screenshots of its pages for the docs.

``python -m example_app.dashboard_demo [--out docs/_static]`` builds the
example app on a fresh SQLite file, fills ``telemetry_traces`` with a day of
realistic traffic (requests over the shop's routes with a lunchtime peak, a
slow deploy, a burst of errors from the billing service, sign-in failures,
cache misses, slow queries), serves the app on a local port, signs in as the
admin in headless Chromium and writes a PNG of each dashboard page.

:func:`fill` is what the browser tests and the benchmark use for data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import pathlib
import random
import tempfile
import typing as t
import uuid

import sqlalchemy as sa

#: (endpoint, method, share of traffic, median ms): the shop's routes, plus
#: a few an operator would see in a real one.
ROUTES: tuple[tuple[str | None, str, float, float], ...] = (
    ("catalogue.show", "GET", 0.34, 18.0),
    ("catalogue.search", "GET", 0.16, 65.0),
    ("catalogue.list", "GET", 0.14, 24.0),
    ("cart.add", "POST", 0.09, 32.0),
    ("cart.show", "GET", 0.08, 15.0),
    ("checkout.pay", "POST", 0.03, 340.0),
    ("auth.login", "POST", 0.04, 120.0),
    ("auth.stepup", "POST", 0.01, 40.0),
    ("admin.set_price", "POST", 0.005, 55.0),
    ("api.orders", "GET", 0.07, 48.0),
    (None, "GET", 0.025, 2.0),
)
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "python-requests/2.31.0",
    "shop-mobile/3.2.1 (Android 14)",
)


def fill(
    conn: sa.Connection,
    table: sa.Table,
    *,
    now: dt.datetime,
    hours: float = 24.0,
    requests: int = 30_000,
    seed: int = 7,
) -> list[str]:
    """Insert ``requests`` requests over the ``hours`` before ``now`` with
    the events they cause; returns the request ids of a few interesting
    requests (a failed payment first)."""
    rnd = random.Random(seed)
    postgres = conn.dialect.name == "postgresql"
    weights = [share for _, _, share, _ in ROUTES]
    rows: list[dict[str, t.Any]] = []
    notable: list[str] = []
    span = hours * 3600.0

    def stamp(when: dt.datetime) -> dt.datetime:
        return when if postgres else when.replace(tzinfo=None)

    def add(when: dt.datetime, **fields: t.Any) -> None:
        row = {
            "actor_type": "anonymous",
            "actor_id": None,
            "severity": "info",
            "request_id": None,
            "route_name": None,
            "ip_address": None,
            "user_agent": None,
            "metadata": None,
            **fields,
            "occurred_at": stamp(when),
        }
        rows.append(row)
        if len(rows) >= 5000:
            conn.execute(table.insert(), rows)
            rows.clear()

    def draw() -> float:
        # More traffic at midday and in the evening (UTC), less at night.
        while True:
            ago = rnd.uniform(0, span)
            end = now - dt.timedelta(seconds=ago)
            hour = end.hour + end.minute / 60
            if rnd.random() < 0.35 + 0.65 * math.sin(math.pi * (hour - 4) / 20) ** 2:
                return ago

    # Oldest first, so that ids grow with time as they do when recorded.
    for ago in sorted((draw() for _ in range(requests)), reverse=True):
        end = now - dt.timedelta(seconds=ago)
        route, method, _, median = rnd.choices(ROUTES, weights)[0]
        duration = rnd.lognormvariate(math.log(median), 0.55)
        # A slow deploy five hours ago: everything 2.5x slower for 40 minutes.
        deploy = 5 * 3600 - 40 * 60 < ago < 5 * 3600
        if deploy:
            duration *= 2.5
        if rnd.random() < 0.004:
            duration *= 12
        status = 200 if method == "GET" else rnd.choice((200, 200, 201, 303))
        exception = None
        events: list[tuple[float, str, str, dict[str, t.Any]]] = []
        if route is None:
            status = 404
        elif route == "auth.login" and rnd.random() < 0.18:
            status = 401
            events.append((0.8, "auth_login_failure", "notice", {}))
        elif route == "auth.login":
            events.append((0.8, "auth_login_success", "info", {}))
        elif route == "catalogue.show" and rnd.random() < 0.04:
            status = 404
        elif rnd.random() < 0.006:
            status = 400
        billing_outage = 2 * 3600 < ago < 2 * 3600 + 25 * 60
        if route == "checkout.pay":
            if billing_outage and rnd.random() < 0.6:
                status, exception = 502, None
                duration += 3000
                events.append(
                    (
                        0.9,
                        "external_call_fail",
                        "error",
                        {"service": "billing", "error": "ReadTimeout", "timeout_s": 3},
                    )
                )
            elif rnd.random() < 0.08:
                events.append(
                    (
                        0.85,
                        "external_call_slow",
                        "warning",
                        {"service": "billing", "duration_ms": round(duration * 0.8, 1)},
                    )
                )
        if route and route.startswith("catalogue") and rnd.random() < 0.3:
            events.append((0.1, "cache_miss", "debug", {"key": "product"}))
        if route == "catalogue.search" and duration > 150:
            events.append(
                (
                    0.7,
                    "db_query_slow",
                    "warning",
                    {"duration_ms": round(duration * 0.7, 1), "table": "products"},
                )
            )
        if rnd.random() < 0.0008:
            status, exception = 500, rnd.choice(("KeyError", "IntegrityError"))
            events.append((0.95, "system_exception", "error", {"type": exception}))
        if route == "api.orders" and rnd.random() < 0.01:
            status = 429
            events.append((0.05, "rate_limit_hit", "warning", {"limit": "100/minute"}))
        if route == "admin.set_price":
            events.append(
                (0.9, "resource_mutation", "info", {"resource": "product", "id": 1})
            )
        request_id = uuid.UUID(int=rnd.getrandbits(128), version=4).hex
        ip = f"203.0.113.{rnd.randrange(1, 255)}"
        agent = rnd.choice(AGENTS)
        actor: dict[str, t.Any] = {"actor_type": "anonymous", "actor_id": None}
        if route and route.startswith(("cart", "checkout", "api")):
            actor = {"actor_type": "user", "actor_id": rnd.randrange(1, 400)}
        elif route == "admin.set_price":
            actor = {"actor_type": "admin", "actor_id": 2}
        start = end - dt.timedelta(milliseconds=duration)
        common = {
            "request_id": request_id,
            "route_name": route,
            "ip_address": ip,
            "user_agent": agent,
            **actor,
        }
        for share, event_type, severity, metadata in events:
            add(
                start + dt.timedelta(milliseconds=duration * share),
                event_type=event_type,
                severity=severity,
                metadata=metadata,
                **common,
            )
        slow = duration > 1000
        meta: dict[str, t.Any] = {
            "method": method,
            "status": status,
            "duration_ms": round(duration, 3),
        }
        if exception:
            meta["exception"] = exception
        elif slow:
            meta["slow"] = True
        severity = "error" if exception else ("warning" if slow else "info")
        add(
            end,
            event_type="http_request_end",
            severity=severity,
            metadata=meta,
            **common,
        )
        if route == "checkout.pay" and status == 502 and len(notable) < 3:
            notable.append(request_id)
    for hour in range(int(hours), 0, -1):
        add(
            now - dt.timedelta(hours=hour, minutes=rnd.uniform(0, 59)),
            actor_type="system",
            event_type="worker_job_end",
            metadata={"job": "send_newsletter", "duration_ms": rnd.randint(800, 4000)},
        )
    if rows:
        conn.execute(table.insert(), rows)
    return notable


# -- screenshots ---------------------------------------------------------------

SHOTS = (
    ("dashboard-overview.png", "/_telemetry/?window=24h"),
    ("dashboard-route.png", "/_telemetry/route?window=24h&name=checkout.pay"),
    ("dashboard-trace.png", "/_telemetry/trace/{trace}?window=24h"),
    ("dashboard-events.png", "/_telemetry/events?window=24h&min_severity=warning"),
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/_static", type=pathlib.Path)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)

    import threading

    from flask_migrate import upgrade
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from . import create_app, seed_data
    from .extensions import db, telemetry

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/demo.db"})
        with app.app_context():
            upgrade()
            seed_data()
            with db.engine.begin() as conn:
                notable = fill(
                    conn,
                    telemetry.trace_model.__table__,
                    now=dt.datetime.now(dt.UTC),
                )
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_port}"
        args.out.mkdir(parents=True, exist_ok=True)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=args.chromium,
                    args=[
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-background-networking",
                    ],
                )
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                # The example app's dashboard is for a stepped-up admin.
                page.request.post(
                    f"{base}/auth/login",
                    data={"username": "root", "password": "correct horse"},
                )
                page.request.post(f"{base}/auth/stepup", data={"code": "424242"})
                for name, path in SHOTS:
                    page.goto(base + path.format(trace=notable[0]))
                    page.screenshot(path=str(args.out / name), full_page=False)
                    print(f"wrote {args.out / name}")
                browser.close()
        finally:
            server.shutdown()
            thread.join()


if __name__ == "__main__":
    main()
