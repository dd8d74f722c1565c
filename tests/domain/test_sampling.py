"""Head sampling of routine request events, and excluded routes."""

from __future__ import annotations

import math

from flask import Blueprint

from conftest import Bundle, MakeApp
from flask_telemetry import ConfigVars, EventType
from flask_telemetry.domain.sampling import Sampler

RATE = 0.01


def _binomial_bounds(n: int, p: float, tail: float = 1e-7) -> tuple[int, int]:
    """The range a Binomial(n, p) count leaves with probability < 2 * tail."""
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    pmf = [
        math.exp(
            log_n
            - math.lgamma(k + 1)
            - math.lgamma(n - k + 1)
            + k * log_p
            + (n - k) * log_q
        )
        for k in range(n + 1)
    ]
    low, acc = 0, 0.0
    while acc + pmf[low] < tail:
        acc += pmf[low]
        low += 1
    high, acc = n, 0.0
    while acc + pmf[high] < tail:
        acc += pmf[high]
        high -= 1
    return low, high


def test_slow_failing_and_explicit_events_are_always_kept(make_app: MakeApp) -> None:
    bundle = make_app(
        PROPAGATE_EXCEPTIONS=False,
        **{
            ConfigVars.SAMPLE_RATE: RATE,
            # Only /slow is slow: a routine request that a loaded machine
            # stalls past the default second (its sync write, say) would be
            # kept as slow, rightly, and counted here as a sampling error.
            ConfigVars.SLOW_REQUEST_MS: 60_000,
            ConfigVars.SLOW_REQUEST_MS_BY_ENDPOINT: {"slow": 0},
        },
    )
    app, telemetry = bundle.app, bundle.telemetry

    @app.get("/fast")
    def fast() -> str:
        return "ok"

    @app.get("/slow")
    def slow() -> str:
        return "ok"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/explicit")
    def explicit() -> str:
        telemetry.record(EventType.CACHE_MISS)
        return "ok"

    client = bundle.client()
    routine, forced = 2000, 25
    for _ in range(routine):
        client.get("/fast")
    for _ in range(forced):
        client.get("/slow")
        client.get("/boom")
        client.get("/missing")
        client.get("/explicit")
    rows = bundle.rows()
    ends = [r for r in rows if r.event_type == "http_request_end"]
    by_route: dict[str | None, list[float]] = {}
    for row in ends:
        by_route.setdefault(row.route_name, []).append(row.metadata["sample_rate"])
    assert by_route["slow"] == [1.0] * forced
    assert by_route["boom"] == [1.0] * forced
    assert by_route[None] == [1.0] * forced  # 404, kept by TELEMETRY_SAMPLE_KEEP_STATUS
    assert sum(r.event_type == "cache_miss" for r in rows) == forced
    kept = len(by_route.get("fast", [])) + len(by_route.get("explicit", []))
    assert set(by_route.get("fast", []) + by_route.get("explicit", [])) <= {RATE}
    low, high = _binomial_bounds(routine + forced, RATE)
    assert low <= kept <= high
    with app.app_context():
        stats = telemetry.stats()
    assert stats["dropped"]["sampled_out"] == routine + forced - kept
    assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())
    assert stats["written"] == len(rows)


def test_keep_status_is_configurable(make_app: MakeApp) -> None:
    bundle = make_app(
        **{ConfigVars.SAMPLE_RATE: 0.0, ConfigVars.SAMPLE_KEEP_STATUS: 500}
    )
    client = bundle.client()
    client.get("/missing")
    assert bundle.rows() == []


def test_no_sample_rate_in_metadata_at_full_rate(bundle: Bundle) -> None:
    bundle.client().get("/missing")
    (row,) = bundle.rows()
    assert "sample_rate" not in row.metadata


def test_sampling_follows_the_trace_id() -> None:
    sampler = Sampler(0.25)
    low = "4bf92f3577b34da6" + "0000000000000001"
    high = "4bf92f3577b34da6" + "ffffffffffffffff"
    assert all(sampler.keep(low) for _ in range(100))
    assert not any(sampler.keep(high) for _ in range(100))
    assert Sampler(1.0).keep(high)
    assert not Sampler(0.0).keep(low)


def test_random_sampling_rate() -> None:
    sampler = Sampler(RATE)
    n = 200_000
    kept = sum(sampler.keep() for _ in range(n))
    low, high = _binomial_bounds(n, RATE)
    assert low <= kept <= high


def test_excluded_routes(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.EXCLUDE: ["static", "admin.*", "/internal/"]})
    app = bundle.app
    admin = Blueprint("admin", __name__)

    @admin.get("/users")
    def users() -> str:
        return "ok"

    app.register_blueprint(admin, url_prefix="/admin")

    @app.get("/internal/<path:rest>")
    def internal(rest: str) -> str:
        return "ok"

    @app.get("/internals")
    def internals() -> str:
        return "ok"

    client = bundle.client()
    for path, status in [
        ("/admin/users", 200),
        ("/internal/a/b", 200),
        ("/internal", 404),  # excluded by path, whatever the endpoint
        ("/static/x.css", 404),  # a missing static file
    ]:
        response = client.get(path)
        assert response.status_code == status
        assert "X-Request-ID" not in response.headers
    client.get("/internals")
    assert [r.route_name for r in bundle.rows()] == ["internals"]


def test_health_checks_and_static_files_are_excluded_by_default(
    bundle: Bundle,
) -> None:
    app = bundle.app

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/healthz/<part>")
    def healthz(part: str) -> str:
        return "ok"

    @app.get("/healthy")
    def healthy() -> str:
        return "ok"

    shop = Blueprint(
        "shop", __name__, static_folder="static", static_url_path="/shop-static"
    )
    app.register_blueprint(shop)
    client = bundle.client()
    for path in ("/health", "/healthz/db"):
        assert client.get(path).status_code == 200
    for path in ("/static/app.js", "/shop-static/x.png"):  # missing files: 404
        assert client.get(path).status_code == 404
    client.get("/healthy")
    assert [r.route_name for r in bundle.rows()] == ["healthy"]
    with app.app_context():
        assert bundle.telemetry.stats()["accepted"] == 1
