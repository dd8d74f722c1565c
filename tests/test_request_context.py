"""The per-request RequestContext: its hand-written ``__init__`` keeps the
dataclass's fields and defaults."""

from __future__ import annotations

import dataclasses

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
