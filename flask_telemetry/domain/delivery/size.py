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
    _, _, _, _, request_id, route_name, ip_address, user_agent, metadata, _ = event
    size = _EVENT
    if request_id is not None:
        size += _sizeof(request_id)
    if route_name is not None:
        size += _sizeof(route_name)
    if ip_address is not None:
        size += _sizeof(ip_address)
    if user_agent is not None:
        size += _sizeof(user_agent)
    if metadata is not None:
        size += _dict_bytes(metadata) if type(metadata) is dict else _FACTS
    return size


def _dict_bytes(value: dict[str, t.Any]) -> int:
    size: int = _sizeof(value)
    for key, item in value.items():
        kind = type(item)
        if kind is str:
            size += _sizeof(key) + _sizeof(item)
        elif kind is dict:
            size += _sizeof(key) + _dict_bytes(item)
        elif kind is list:
            size += _sizeof(key) + _list_bytes(item)
        else:  # a number, True, False or None
            size += _sizeof(key) + 32
    return size


def _list_bytes(value: list[t.Any]) -> int:
    size: int = _sizeof(value)
    for item in value:
        kind = type(item)
        if kind is str:
            size += _sizeof(item)
        elif kind is dict:
            size += _dict_bytes(item)
        elif kind is list:
            size += _list_bytes(item)
        else:
            size += 32
    return size
