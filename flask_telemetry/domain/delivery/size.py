"""What a queued event occupies in memory, for the queue's bound in bytes."""

from __future__ import annotations

import sys
import typing as t

from ..mapping import Pending

_sizeof = sys.getsizeof
#: The tuple of ten slots, its float and its share of the queue's own memory.
_EVENT = _sizeof(tuple(range(10))) + 24 + 16
#: A request's facts (``http_request_end``): a tuple of small values.
_FACTS = 400


def pending_bytes(event: Pending) -> int:
    """An estimate, slightly high, of the memory a queued event holds.

    Objects shared with the rest of the program (interned keys, small
    numbers) are counted as if they were the event's own. The metadata is
    walked; it is bounded by ``TELEMETRY_METADATA_MAX_BYTES`` already.
    """
    size = _EVENT
    for text in event[4:8]:
        if text is not None:
            size += _sizeof(text)
    metadata = event[8]
    if metadata is not None:
        size += _FACTS if type(metadata) is tuple else _value_bytes(metadata)
    return size


def _value_bytes(value: t.Any) -> int:
    size: int = _sizeof(value)
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            size += _sizeof(key) + _value_bytes(item)
    elif kind is list:
        for item in value:
            size += _value_bytes(item)
    return size
