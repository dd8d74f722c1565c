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
#: What an ASCII str occupies besides its characters (``sys.getsizeof``).
_ASCII = _sizeof("")
#: What a dict of ``n`` items occupies besides its keys and values, at most:
#: ``_DICT + _DICT_ITEM * n``. ``sys.getsizeof`` says 184 bytes up to five
#: items, then at most 64 + 39 an item, for a dict grown by insertion or
#: copied (as the privacy walk and its flat copy make them). Read from its
#: length, at a fraction of the cost; ``tests/test_bounds.py`` checks it.
_DICT = 184
_DICT_ITEM = 40
#: A number, True, False or None.
_SCALAR = 32


def pending_bytes(event: Pending) -> int:
    """An estimate, slightly high, of the memory a queued event holds.

    Objects shared with the rest of the program (interned keys, small
    numbers) are counted as if they were the event's own. The metadata is
    walked (it is bounded by ``TELEMETRY_METADATA_MAX_BYTES`` already): its
    text is counted as for the fields, each dict from its length (see
    ``_DICT``), a little above what ``sys.getsizeof`` says.
    """
    # sys.getsizeof(text) is _ASCII + len(text) for the ASCII str these
    # almost always are, at a fifth of the cost (written out four times: a
    # loop or a helper function would cost as much again).
    _, _, _, _, request_id, route_name, ip_address, user_agent, metadata, _ = event
    size = _EVENT
    if request_id is not None:
        if type(request_id) is str and request_id.isascii():
            size += _ASCII + len(request_id)
        else:
            size += _sizeof(request_id)
    if route_name is not None:
        if type(route_name) is str and route_name.isascii():
            size += _ASCII + len(route_name)
        else:
            size += _sizeof(route_name)
    if ip_address is not None:
        if type(ip_address) is str and ip_address.isascii():
            size += _ASCII + len(ip_address)
        else:
            size += _sizeof(ip_address)
    if user_agent is not None:
        if type(user_agent) is str and user_agent.isascii():
            size += _ASCII + len(user_agent)
        else:
            size += _sizeof(user_agent)
    if metadata is not None:
        size += _dict_bytes(metadata) if type(metadata) is dict else _FACTS
    return size


def _dict_bytes(value: dict[t.Any, t.Any]) -> int:
    # Keys and values as in pending_bytes: an ASCII str without a call to
    # sys.getsizeof, which costs more than the rest of the loop.
    size = _DICT + _DICT_ITEM * len(value)
    for key, item in value.items():
        if type(key) is str and key.isascii():
            size += _ASCII + len(key)
        else:
            size += _sizeof(key)
        kind = type(item)
        if kind is str:
            size += _ASCII + len(item) if item.isascii() else _sizeof(item)
        elif kind is dict:
            size += _dict_bytes(item)
        elif kind is list:
            size += _list_bytes(item)
        else:  # a number, True, False or None
            size += _SCALAR
    return size


def _list_bytes(value: list[t.Any]) -> int:
    size: int = _sizeof(value)
    for item in value:
        kind = type(item)
        if kind is str:
            size += _ASCII + len(item) if item.isascii() else _sizeof(item)
        elif kind is dict:
            size += _dict_bytes(item)
        elif kind is list:
            size += _list_bytes(item)
        else:
            size += _SCALAR
    return size
