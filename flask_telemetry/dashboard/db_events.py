"""The SQLAlchemy integration's events as the pages show them: a route's
N+1 statement shapes (``db_n_plus_one``) and a request's statements on its
timeline (``db_query_profile``). Their metadata may have been written by
anything: what is not as the integration writes it is left out."""

from __future__ import annotations

import typing as t

from . import charts

#: Statements of a query profile drawn on a trace's timeline.
MAX_PROFILE_SPANS = 100


def n_plus_one(events: t.Sequence[t.Any], name: str | None) -> list[dict[str, t.Any]]:
    """The route ``name``'s N+1 shapes from its ``db_n_plus_one`` events
    (the newest the route's page reads): requests each was seen in, the
    most runs in one request and the total time, most requests first."""
    shapes: dict[str, dict[str, t.Any]] = {}
    for event in events:
        metadata = event.metadata if isinstance(event.metadata, dict) else {}
        statement = metadata.get("statement")
        if event.route_name != name or not isinstance(statement, str):
            continue
        count = number(metadata.get("count"))
        found = shapes.setdefault(
            statement,
            {"statement": statement, "requests": 0, "max_count": 0, "total_ms": 0.0},
        )
        found["requests"] += 1
        found["max_count"] = max(found["max_count"], int(count))
        found["total_ms"] += number(metadata.get("total_ms"))
    return sorted(shapes.values(), key=lambda s: (-s["requests"], -s["max_count"]))


def profile_spans(metadata: object, started: float) -> list[charts.Span]:
    """The statements of a ``db_query_profile`` as timeline spans from
    ``started`` (ms), the first :data:`MAX_PROFILE_SPANS`; anything
    unreadable is left out."""
    if not isinstance(metadata, dict):
        return []
    shapes = metadata.get("shapes")
    statements = metadata.get("statements")
    if not isinstance(shapes, list) or not isinstance(statements, list):
        return []
    spans = []
    for item in statements[:MAX_PROFILE_SPANS]:
        if not (isinstance(item, list) and len(item) == 3):
            continue
        index, start, length = item
        if isinstance(index, bool) or not isinstance(index, int):
            continue
        if not 0 <= index < len(shapes) or not isinstance(shapes[index], str):
            continue
        shape = shapes[index]
        spans.append(
            charts.Span(
                label=f"sql: {shape}",
                start_ms=started + number(start),
                length_ms=number(length),
                css="span db",
                hint=f"{shape} ({number(length):.3f} ms)",
            )
        )
    return spans


def number(value: object) -> float:
    """A stored number, or 0 for anything else (a row written by anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    found = float(value)
    return found if 0.0 <= found <= 1e12 else 0.0
