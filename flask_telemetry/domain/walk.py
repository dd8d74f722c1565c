"""The privacy walk: a clean, JSON-ready copy of any metadata mapping,
counting its JSON size as it goes and stopping as soon as that passes the
cap, so that any input costs about as much as metadata of the cap's size.

:class:`~.privacy.Privacy` takes the walk for what its cheaper copies (the
flat check and the encoded copy, :mod:`.encoded`) cannot take.
"""

from __future__ import annotations

import json.encoder
import math
import re
import typing as t
from collections.abc import Mapping


class Redaction(t.Protocol):
    """What the walk asks of the privacy settings: which keys redact."""

    def redacts(self, key: str) -> bool:
        """Whether a value under ``key`` is stored as ``[REDACTED]``."""
        ...


#: What a redacted value is stored as.
REDACTED = "[REDACTED]"
#: What a value nested deeper than :data:`MAX_DEPTH` is stored as (MySQL
#: refuses JSON documents nested deeper than 100 levels).
TOO_DEEP = "[TOO DEEP]"
MAX_DEPTH = 20

# Control characters and lone surrogates (which no database can store as
# UTF-8). Metadata keeps tab, newline and carriage return: JSON escapes them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_IN_JSON = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_escaped = json.encoder.encode_basestring  # exact JSON form, in C
#: Whole lists of numbers or of strings encoded in C (separators ", ").
_encode_numbers = json.JSONEncoder(allow_nan=False, check_circular=False).encode
_encode_strings = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
_NONE = type(None)
_NUMBERS = frozenset((int, float, bool, _NONE))
_STR = frozenset((str,))
_CONTAINERS = frozenset((dict, list))
#: Ints the flat check prints without care (int.__repr__ refuses huge ones).
_FLAT_INT = 10**18


def is_mapping(value: object) -> bool:
    """Whether ``value`` is a mapping; a plain dict is recognised without
    isinstance() against the ``Mapping`` ABC, which costs ten times more."""
    return type(value) is dict or isinstance(value, Mapping)


def clean_text(value: str, size: int) -> str:
    """``value`` without control characters, cut to ``size`` characters."""
    if not value.isprintable():
        value = _CONTROL.sub("", value)
    return value if len(value) <= size else value[:size]


class _NotJSON(Exception):
    pass


class _TooBig(Exception):
    pass


class _Walk:
    """One copy of a metadata mapping, counting its JSON size as it goes and
    stopping (:class:`_TooBig`) as soon as that passes ``limit``."""

    __slots__ = ("limit", "path", "privacy", "size")

    def __init__(self, privacy: Redaction, limit: int) -> None:
        self.privacy = privacy
        self.limit = limit
        self.size = 0
        self.path: set[int] = set()

    def add(self, size: int) -> None:
        self.size += size
        if self.size > self.limit:
            raise _TooBig

    def mapping(self, value: t.Mapping[t.Any, t.Any], depth: int) -> dict[str, t.Any]:
        ident = self.enter(value)
        # {} and ", " between items; at least 5 bytes more ("": 0) per item:
        # an object too big for the limit stops here, however many items.
        count = len(value)
        limit = self.limit
        size = self.size + 2 + 2 * max(0, count - 1)
        if size + 5 * count > limit:
            self.size = size + 5 * count
            raise _TooBig
        out: dict[str, t.Any] = {}
        redacts = self.privacy.redacts
        # The sizes are kept in a local; the common keys and values (short
        # printable strings, booleans, None) are handled inline.
        for key, item in value.items():
            if type(key) is str and len(key) <= 256 and key.isprintable():
                name = key
                size += _size(key) + 2  # "key": (quotes and escapes included)
            else:
                self.size = size
                name = self.key(key)
                size = self.size + 2
            if name in out:
                raise _NotJSON(f"two keys are {name!r} once made strings")
            kind = type(item)
            if redacts(name):
                size += len(REDACTED) + 2
                out[name] = REDACTED
            elif kind is str and len(item) <= 256 and item.isprintable():
                size += _size(item)
                out[name] = item
            elif item is None or kind is bool:
                size += 5 if item is False else 4
                out[name] = item
            else:
                self.size = size
                out[name] = self.value(item, depth + 1)
                size = self.size
            if size > limit:
                self.size = size
                raise _TooBig
        self.size = size
        self.path.discard(ident)
        return out

    def enter(self, value: object) -> int:
        """Enter a container: its id, kept in the path until it is left, or
        :class:`_NotJSON` when it is already there (a cycle)."""
        ident = id(value)
        if ident in self.path:
            raise _NotJSON("circular reference")
        self.path.add(ident)
        return ident

    def flat_list(
        self, value: list[t.Any] | tuple[t.Any, ...], count: int, depth: int
    ) -> list[t.Any] | None:
        """The copy of a list whose items are all numbers, booleans and None,
        all short printable strings, or all empty dicts and lists, checked
        and sized by calls that run in C (a few per list instead of one walk
        step per item); None for any other list, which the walk takes. The
        list's brackets and separators are counted already."""
        kinds = set(map(type, value))
        if kinds <= _NUMBERS:
            return self.numbers(value, kinds, count)
        if kinds == _STR:
            if sum(map(len, value)) + 2 * count > self.limit - self.size:
                return None  # may be too big: the walk stops where it is
            if not all(map(str.isprintable, value)):
                return None
            text = _encode_strings(value)
            self.add(len(text.encode("utf-8")) - 2 * count)
            return list(value)
        if kinds <= _CONTAINERS and depth + 1 < MAX_DEPTH and not any(value):
            self.add(2 * count)  # {} or [] each
            return [{} if type(item) is dict else [] for item in value]
        return None

    def numbers(
        self, value: list[t.Any] | tuple[t.Any, ...], kinds: set[type], count: int
    ) -> list[t.Any] | None:
        """:meth:`flat_list` of numbers, booleans and None."""
        # Ints within 10**18 print in at most 19 characters; a list with a
        # bigger one takes the walk, which stops before printing it.
        numbers = value if _NONE not in kinds else [v for v in value if v is not None]
        if numbers and not -_FLAT_INT < min(numbers) <= max(numbers) < _FLAT_INT:
            return None
        try:
            text = _encode_numbers(value)
        except ValueError:  # NaN or an infinity: the walk says which
            return None
        self.add(len(text) - 2 * count)  # less the counted "[]" and ", "
        return list(value)

    def key(self, key: object) -> str:
        if isinstance(key, str) and len(key) + 2 > self.limit - self.size:
            self.add(len(key) + 2)  # too big: stop before reading it
        text = _key(key, self.limit - self.size)
        self.add(_size(text))
        return text

    def value(self, value: t.Any, depth: int) -> t.Any:
        kind = type(value)
        if kind is str or isinstance(value, str):
            return self.text(value)
        if value is None or kind is bool:
            self.add(5 if value is False else 4)
            return value
        if isinstance(value, int):
            return self.integer(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _NotJSON(f"{value!r} is not a JSON number")
            real = float(value)
            self.add(len(float.__repr__(real)))
            return real
        sequence = isinstance(value, (list, tuple))
        if depth >= MAX_DEPTH and (sequence or is_mapping(value)):
            self.add(len(TOO_DEEP) + 2)
            return TOO_DEEP
        if sequence:
            return self.sequence(value, depth)
        if is_mapping(value):
            return self.mapping(value, depth)
        raise _NotJSON(f"{kind.__name__} value")

    def text(self, value: str) -> str:
        if len(value) + 2 > self.limit - self.size:
            self.add(len(value) + 2)  # too big: stop before reading it
        text = value if type(value) is str else str.__str__(value)
        if not text.isprintable():
            text = _CONTROL_IN_JSON.sub("", text)
        self.add(_size(text))
        return text

    def integer(self, value: int) -> int:
        number = int(value)
        digits = int(number.bit_length() * 0.30103)
        if digits > self.limit - self.size:
            self.add(digits)  # too big: stop before printing it
        try:
            self.add(len(int.__repr__(number)))
        except ValueError:  # more digits than Python will print
            raise _NotJSON(f"integer of {number.bit_length()} bits") from None
        return number

    def sequence(
        self, value: list[t.Any] | tuple[t.Any, ...], depth: int
    ) -> list[t.Any]:
        ident = id(value)
        if ident in self.path:
            raise _NotJSON("circular reference")
        count = len(value)
        self.add(2 + 2 * max(0, count - 1))  # [] and ", "
        if self.size + count > self.limit:  # at least a byte per item
            self.add(count)
        if count:
            items = self.flat_list(value, count, depth)
            if items is not None:
                return items
        self.path.add(ident)
        items = [self.value(item, depth + 1) for item in value]
        self.path.discard(ident)
        return items


def _key(key: object, room: int = 1 << 30) -> str:
    # The conversions json.dumps makes for keys that are not strings.
    if isinstance(key, str):
        text = key if type(key) is str else str.__str__(key)
        return text if text.isprintable() else _CONTROL_IN_JSON.sub("", text)
    if key is None or isinstance(key, bool):
        return "null" if key is None else ("true" if key else "false")
    if isinstance(key, int):
        if key.bit_length() * 0.30103 > room:
            return "0" * (room + 1)  # longer than what is left: the walk stops
        try:
            return int.__repr__(key)
        except ValueError:
            raise _NotJSON(f"integer key of {key.bit_length()} bits") from None
    if isinstance(key, float):
        if not math.isfinite(key):
            raise _NotJSON(f"{key!r} is not a JSON key")
        return float.__repr__(key)
    raise _NotJSON(f"{type(key).__name__} key")


def _size(text: str) -> int:
    """Bytes of ``text`` as a JSON string in UTF-8 (quotes and escapes included)."""
    if text.isascii():
        return len(_escaped(text)) if not text.isalnum() else len(text) + 2
    return len(_escaped(text).encode("utf-8", "surrogatepass"))
