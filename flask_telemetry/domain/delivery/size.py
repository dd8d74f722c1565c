"""What a queued event occupies in memory, for the queue's bound in bytes."""

from __future__ import annotations

import sys
import typing as t

from ...storage import row
from ..mapping import Pending

_sizeof = sys.getsizeof
#: The tuple of one slot per column, its float and its share of the queue's
#: own memory.
_EVENT = _sizeof(tuple(range(len(row.COLUMNS)))) + 24 + 16
#: A request's facts (``http_request_end``): a tuple of small values.
_FACTS = 400
#: What an ASCII str occupies besides its characters (``sys.getsizeof``).
_ASCII = _sizeof("")
#: What a dict of ``n`` items occupies besides its keys and values, at most:
#: ``_DICT + _DICT_ITEM * n``. ``sys.getsizeof`` says 184 bytes up to five
#: items, then at most 64 + 39 an item, for a dict grown by insertion or
#: copied (as the privacy walk and its flat copy make them). Read from its
#: length, at a fraction of the cost; ``tests/domain/test_bounds.py`` checks it.
_DICT = 184
_DICT_ITEM = 40
#: A number, True, False or None.
_SCALAR = 32


def _pending_bytes_source() -> str:
    """The source of :func:`pending_bytes`, written out from the columns.

    sys.getsizeof(text) is _ASCII + len(text) for the ASCII str the free
    text almost always is, at a fifth of the cost, so each free-text column
    is counted by its own lines (a loop or a helper function would cost as
    much again). The vocabulary words are shared with the rest of the
    program; numbers and the time are in ``_EVENT``.
    """
    slots = []
    lines = ["    size = _EVENT"]
    for i, column in enumerate(row.COLUMNS):
        value = f"v{i}"
        if column.free_text:
            slots.append(value)
            lines += [
                f"    if {value} is not None:",
                f"        if type({value}) is str and {value}.isascii():",
                f"            size += _ASCII + len({value})",
                "        else:",
                f"            size += _sizeof({value})",
            ]
        elif column.kind is dict:
            slots.append(value)
            lines += [
                f"    if type({value}) is dict:",
                f"        size += _dict_bytes({value})",
                f"    elif type({value}) is tuple:",
                "        size += _FACTS",
                f"    elif {value} is not None:  # its JSON text (row.JsonText)",
                f"        size += _sizeof({value})",
            ]
        else:
            slots.append("_")
    head = f"def pending_bytes(event):\n    {', '.join(slots)}, = event\n"
    return head + "\n".join(lines) + "\n    return size\n"


def _dict_bytes(value: dict[t.Any, t.Any]) -> int:
    # Keys and values as in pending_bytes: an ASCII str without a call to
    # sys.getsizeof, which costs more than the rest of the loop.
    size = _DICT + _DICT_ITEM * len(value)
    for key in value:
        if type(key) is str and key.isascii():
            size += _ASCII + len(key)
        else:
            size += _sizeof(key)
    return size + _items_bytes(value.values())


def _list_bytes(value: list[t.Any]) -> int:
    return _sizeof(value) + _items_bytes(value)


def _items_bytes(items: t.Iterable[t.Any]) -> int:
    """The values of a dict or the items of a list (see pending_bytes)."""
    size = 0
    for item in items:
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


#: An estimate, slightly high, of the memory a queued event holds (written
#: out from the columns at import: see :func:`_pending_bytes_source`).
#:
#: Objects shared with the rest of the program (interned keys, small
#: numbers) are counted as if they were the event's own. Metadata queued
#: as its JSON text (the privacy settings' encoded copy) is that str;
#: metadata queued as objects (the small flat ones and the walk's) is
#: walked (it is bounded by ``TELEMETRY_METADATA_MAX_BYTES`` already): its
#: text is counted as for the fields, each dict from its length (see
#: ``_DICT``), a little above what ``sys.getsizeof`` says.
pending_bytes: t.Callable[[Pending], int] = row.define(
    "pending_bytes", _pending_bytes_source(), dict(globals())
)
pending_bytes.__doc__ = """An estimate, slightly high, of the memory a queued
event holds: its texts, its metadata's text or its objects walked (bounded
by the byte cap)."""
