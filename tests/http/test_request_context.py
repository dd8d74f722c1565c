"""The per-request RequestContext: its hand-written ``__init__`` keeps the
dataclass's fields and defaults."""

from __future__ import annotations

import dataclasses
import typing as t

import pytest

from conftest import MakeApp
from flask_telemetry import ActorType
from flask_telemetry.domain import mapping
from flask_telemetry.domain.request_end import ANONYMOUS, actor_of
from flask_telemetry.http.context import RequestContext


def test_init_sets_every_field_to_its_default() -> None:
    ctx = RequestContext("rid-1", "hello", "10.0.0.1", "ua/1.0", "GET", 12.5)
    given = {
        "request_id": "rid-1",
        "route_name": "hello",
        "ip_address": "10.0.0.1",
        "user_agent": "ua/1.0",
        "method": "GET",
        "started": 12.5,
    }
    for field in dataclasses.fields(RequestContext):
        value = getattr(ctx, field.name)  # every slot is set
        if field.name in given:
            assert value == given[field.name], field.name
        else:
            assert field.default is not dataclasses.MISSING, field.name
            assert value == field.default, field.name


def test_trace_ids_by_position_or_name() -> None:
    ctx = RequestContext("r", None, None, None, "GET", 0.0, "a" * 32, "b" * 16)
    assert (ctx.trace_id, ctx.parent_id) == ("a" * 32, "b" * 16)
    same = RequestContext(
        "r", None, None, None, "GET", 0.0, trace_id="a" * 32, parent_id="b" * 16
    )
    assert same == ctx


@pytest.mark.parametrize(
    ("actor", "ip_mode"),
    [
        (ANONYMOUS, "full"),
        ((ActorType.USER, 7), "full"),
        (("admin", None), "truncate"),
    ],
)
def test_request_end_is_queued_as_pending_builds_it(
    make_app: MakeApp, actor: tuple[t.Any, t.Any], ip_mode: str
) -> None:
    """record_request_end builds the queued tuple in place: the same values,
    in the same slots, as mapping.pending() and request_end_facts() make."""
    bundle = make_app(
        TELEMETRY_DELIVERY="async",
        TELEMETRY_FLUSH_INTERVAL=3600.0,
        TELEMETRY_BATCH_SIZE=1000,
        TELEMETRY_IP_MODE=ip_mode,
    )
    state = bundle.app.extensions["telemetry"]
    recorder = state.recorder
    queue = recorder.delivery._queue
    ctx = RequestContext(
        "rid-1", "r" * 300, "203.0.113.9", "u" * 600, "GET", 1.0, "a" * 32, "b" * 16
    )
    ctx.status_code = None  # ended without a response: stored as 500
    ctx.exception = "ValueError"
    ctx.duration_ms = 12.5
    ctx.ended_at = 1700000000.25
    ctx.severity = "error"
    ctx.sample_rate = 1.0
    recorder.record_request_end(ctx, actor)
    queued = queue.pop()
    loaded = actor_of(actor, in_request=True)
    expected = mapping.pending(
        actor_type=str(ActorType(loaded[0]).value),
        actor_id=loaded[1],
        event_type="http_request_end",
        severity="error",
        request_id="rid-1",
        route_name="r" * 255,
        ip_address=recorder.privacy.ip("203.0.113.9"),
        user_agent="u" * 512,
        metadata=mapping.request_end_facts(ctx),
        occurred_at=1700000000.25,
    )
    assert queued == expected
    assert queued[8][1] == 500
    assert type(queued[0]) is str
    with bundle.app.app_context():
        bundle.telemetry.flush(5.0)


@pytest.mark.parametrize(
    ("given", "loaded", "ip_mode"),
    [
        ({}, None, "full"),
        ({}, (ActorType.USER, 7), "full"),
        ({"actor_type": "admin", "actor_id": 3}, (ActorType.USER, 7), "truncate"),
        ({"metadata": {"key": "user:42", "n": 1}}, None, "none"),
    ],
)
def test_record_is_queued_as_pending_builds_it(
    make_app: MakeApp,
    given: dict[str, t.Any],
    loaded: tuple[t.Any, t.Any] | None,
    ip_mode: str,
) -> None:
    """record() in a request builds the queued tuple in place: the same
    values, in the same slots, as mapping.pending() makes."""
    bundle = make_app(
        TELEMETRY_DELIVERY="async",
        TELEMETRY_FLUSH_INTERVAL=3600.0,
        TELEMETRY_BATCH_SIZE=1000,
        TELEMETRY_RECORD_REQUESTS=False,
        TELEMETRY_IP_MODE=ip_mode,
    )
    bundle.telemetry.actor_loader(lambda: loaded)
    state = bundle.app.extensions["telemetry"]
    recorder = state.recorder
    queue = recorder.delivery._queue
    agent = "u" * 600
    with bundle.app.test_request_context(
        "/",
        headers={"User-Agent": agent, "X-Request-ID": "rid-1"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    ):
        bundle.app.preprocess_request()
        bundle.telemetry.record("cache_miss", "debug", **given)
    queued = queue.pop()
    explicit = "actor_type" in given
    actor = (given["actor_type"], given["actor_id"]) if explicit else loaded
    actor_type, actor_id = actor_of(actor, in_request=True)
    expected = mapping.pending(
        actor_type=str(ActorType(actor_type).value),
        actor_id=actor_id,
        event_type="cache_miss",
        severity="debug",
        request_id="rid-1",
        route_name=None,
        ip_address=recorder.privacy.ip("203.0.113.9"),
        user_agent=agent[:512],
        metadata=given.get("metadata"),
        occurred_at=queued[9],
    )
    assert queued == expected
    assert all(type(queued[i]) is str for i in (0, 2, 3))
    with bundle.app.app_context():
        bundle.telemetry.flush(5.0)
