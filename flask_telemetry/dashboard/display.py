"""How the pages show a stored event's values: its metadata as text, and the
status and duration of a request end read as the read API reads them."""

from __future__ import annotations

import json
import typing as t

from ..reading import _dialects
from ..storage.vocabulary import EventType


def pretty(metadata: t.Any) -> str:
    """Metadata as indented JSON text (escaped by the template)."""
    return json.dumps(
        metadata, indent=2, sort_keys=True, ensure_ascii=False, default=str
    )


def end_columns(event: t.Any) -> tuple[str, str]:
    """The status and the duration (ms) of an ``http_request_end`` as the
    events lists show them, read as the read API reads them (see
    :func:`~flask_telemetry.reading._dialects.read_fact`); empty texts for other events
    and unreadable values."""
    if event.event_type != EventType.HTTP_REQUEST_END.value:
        return "", ""
    status = _dialects.read_fact(event.metadata, "status")
    duration = _dialects.read_fact(event.metadata, "duration_ms")
    return (
        "" if status is None else str(status),
        "" if duration is None else f"{duration:,.1f}",
    )


def duration(event: t.Any) -> float:
    """The duration of an ``http_request_end`` in ms, read as the read API
    reads it; 0 for other events and unreadable values."""
    if event.event_type != EventType.HTTP_REQUEST_END.value:
        return 0.0
    found = _dialects.read_fact(event.metadata, "duration_ms")
    return 0.0 if found is None else t.cast(float, found)
