"""The read API: events paged by key, filters, counts, on every backend."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import Bundle, MakeApp
from flask_telemetry import ConfigVars, EventType, Severity
from flask_telemetry.reading import EventRecord
from reading_data import NOW, event, store


def test_events_newest_first_with_every_field(bundle: Bundle) -> None:
    when = dt.datetime(2026, 11, 26, 6, 7, 8, 123456, tzinfo=dt.UTC)
    store(
        bundle,
        [
            event(event_type="cache_hit", occurred_at=when),
            event(
                event_type="external_call_fail",
                severity="error",
                actor_type="user",
                actor_id=2**40,
                request_id="req-1",
                route_name="billing.charge",
                ip_address="2001:db8::1",
                user_agent="curl/8",
                metadata={"service": "billing", "n": [1, 2.5, None]},
                occurred_at=when + dt.timedelta(microseconds=1),
            ),
        ],
    )
    with bundle.app.app_context():
        newest, oldest = bundle.telemetry.events()
    assert isinstance(newest, EventRecord)
    assert newest.id > oldest.id
    assert newest.event_type == "external_call_fail"
    assert newest.severity == "error"
    assert newest.actor_type == "user"
    assert newest.actor_id == 2**40
    assert newest.request_id == "req-1"
    assert newest.route_name == "billing.charge"
    assert newest.ip_address == "2001:db8::1"
    assert newest.user_agent == "curl/8"
    assert newest.metadata == {"service": "billing", "n": [1, 2.5, None]}
    assert newest.occurred_at == when + dt.timedelta(microseconds=1)
    assert newest.occurred_at.utcoffset() == dt.timedelta(0)
    assert oldest.occurred_at == when
    assert oldest.metadata == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        newest.severity = "info"  # type: ignore[misc]


def test_keyset_pages_return_every_row_exactly_once(bundle: Bundle) -> None:
    store(
        bundle,
        [
            event(metadata={"i": i}, occurred_at=NOW - dt.timedelta(seconds=i))
            for i in range(257)
        ],
    )
    seen: list[int] = []
    before: int | None = None
    with bundle.app.app_context():
        while True:
            page = bundle.telemetry.events(limit=50, before_id=before)
            if not page:
                break
            assert len(page) <= 50
            ids = [r.id for r in page]
            assert ids == sorted(ids, reverse=True)
            seen += ids
            before = page[-1].id
            # A row written while paging lands before the first page.
            store(bundle, [event(event_type="cache_hit")])
    assert len(seen) == len(set(seen)) == 257
    found = sorted(r for r in seen)
    with bundle.app.app_context():
        stored = bundle.telemetry.events(event_type="cache_miss", limit=1000)
    assert found == sorted(r.id for r in stored)


def test_filters(bundle: Bundle) -> None:
    store(
        bundle,
        [
            event(route_name="api.users", severity="debug", request_id="a"),
            event(route_name="api.orders", severity="warning", request_id="a"),
            event(route_name="apixusers", severity="error"),
            event(route_name="api_v2.users", severity="critical"),
            event(route_name="a%b.c", severity="info", actor_type="user", actor_id=7),
            event(route_name="aXb.c", severity="info", event_type="cache_hit"),
            event(route_name=None, occurred_at=NOW - dt.timedelta(days=2)),
        ],
    )

    def routes(**filters: object) -> list[str]:
        with bundle.app.app_context():
            found = bundle.telemetry.events(**filters)  # type: ignore[arg-type]
        return sorted(r.route_name or "-" for r in found)

    assert routes(route="api.*") == ["api.orders", "api.users"]
    assert routes(route="api?users") == ["api.users", "apixusers"]
    assert routes(route="api_v2.*") == ["api_v2.users"]
    assert routes(route="a%b.*") == ["a%b.c"]
    assert routes(route="api.users") == ["api.users"]
    assert routes(min_severity="warning") == ["api.orders", "api_v2.users", "apixusers"]
    assert routes(min_severity=Severity.CRITICAL) == ["api_v2.users"]
    assert routes(severity="warning") == ["api.orders"]
    assert routes(severity=Severity.ERROR, route="api*") == ["apixusers"]
    assert routes(request_id="a") == ["api.orders", "api.users"]
    assert routes(actor_type="user", actor_id=7) == ["a%b.c"]
    assert routes(event_type=EventType.CACHE_HIT) == ["aXb.c"]
    assert routes(event_type=["cache_hit", "cache_miss"], limit=3) == [
        "-",
        "a%b.c",
        "aXb.c",
    ]
    assert routes(since=dt.timedelta(days=1)) == routes(
        since=NOW - dt.timedelta(days=1)
    )
    assert routes(until=dt.timedelta(days=1)) == ["-"]
    assert len(routes(since=NOW - dt.timedelta(days=3))) == 7
    with bundle.app.app_context(), pytest.raises(ValueError, match="min_severity"):
        bundle.telemetry.events(min_severity="loud")
    with bundle.app.app_context(), pytest.raises(ValueError, match="loud"):
        bundle.telemetry.events(severity="loud")
    with bundle.app.app_context(), pytest.raises(ValueError, match="limit"):
        bundle.telemetry.events(limit=0)


def test_event_counts(bundle: Bundle) -> None:
    store(
        bundle,
        [event(event_type="cache_hit")] * 3
        + [event(event_type="cache_miss", severity="warning")] * 2
        + [event(event_type="cache_miss")]
        + [event(event_type="cache_hit", occurred_at=NOW - dt.timedelta(days=2))],
    )
    with bundle.app.app_context():
        counts = bundle.telemetry.event_counts(since=dt.timedelta(days=1))
    assert [(c.event_type, c.severity, c.count) for c in counts] == [
        ("cache_hit", "info", 3),
        ("cache_miss", "warning", 2),
        ("cache_miss", "info", 1),
    ]


def test_reading_needs_an_app_context(bundle: Bundle) -> None:
    with pytest.raises(RuntimeError, match="application context"):
        bundle.telemetry.events()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_reading_uses_the_telemetry_bind(make_app: MakeApp, tmp_path: Path) -> None:
    bundle = make_app(
        SQLALCHEMY_BINDS={"telemetry": f"sqlite:///{tmp_path / 'telemetry.db'}"},
        **{ConfigVars.BIND_KEY: "telemetry"},
    )
    with bundle.app.app_context():
        bundle.telemetry.record("cache_miss", metadata={"where": "bind"})
        default = bundle.db.engines[None]
        assert not sa.inspect(default).has_table("telemetry_traces")
        (found,) = bundle.telemetry.events()
        assert found.metadata == {"where": "bind"}
        assert bundle.telemetry.event_counts(since=dt.timedelta(hours=1))[0].count == 1
        assert bundle.telemetry.prune(older_than_days=0).deleted == 1
        assert bundle.telemetry.events() == []


@pytest.mark.parametrize("newer_rows", [1, 20_000])
def test_a_past_window_pages_alike_by_id_walk_or_time_index(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch, newer_rows: int
) -> None:
    """SQLite walks the ids down to a window with few newer rows and uses
    the time index otherwise: the same page either way."""
    module = importlib.import_module("flask_telemetry.reading.events")
    monkeypatch.setattr(module, "_NEWER_ROWS", newer_rows)
    start = NOW - dt.timedelta(hours=10)
    # Written out of time order: ids do not follow occurred_at.
    store(
        bundle,
        [
            event(occurred_at=start + dt.timedelta(minutes=(37 * i) % 600))
            for i in range(60)
        ],
    )
    since, until = start + dt.timedelta(hours=2), start + dt.timedelta(hours=4)
    with bundle.app.app_context():
        every = bundle.telemetry.events(limit=1000)
        page = bundle.telemetry.events(since=since, until=until, limit=5)
        rest = bundle.telemetry.events(
            since=since, until=until, limit=1000, before_id=page[-1].id
        )
    inside = [e.id for e in every if since <= e.occurred_at < until]
    assert len(inside) > 5
    assert [e.id for e in page + rest] == inside
