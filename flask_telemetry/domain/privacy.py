"""What may be stored: redaction, size limits, clean strings, client address modes.

Everything here runs when an event is recorded, before it is queued, so a
secret never sits in the in-memory queue and a caller changing its metadata
afterwards cannot change (or break) the stored event. The work is sized for
the request thread: internal metadata skips the walk, so does a small flat
dict (checked in one loop), key decisions are cached, and the JSON size is
counted during the walk instead of encoding.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import itertools
import json.encoder
import math
import re
import typing as t
import unicodedata
from collections.abc import Mapping

from ..exceptions import TelemetryError

#: Metadata keys redacted by default: a key is redacted when its skeleton
#: (see :func:`skeleton`) contains the skeleton of one of these. The list
#: covers Sentry's default denylist (``sentry_sdk.scrubber``) and the query
#: keys OpenTelemetry's semantic conventions redact in URLs by default.
DEFAULT_REDACT_KEYS: tuple[str, ...] = (
    # passwords and secrets
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "credential",
    "private_key",
    "signature",
    # tokens and keys
    "token",
    "jwt",
    "bearer",
    "api_key",
    "apikey",
    "access_key",
    "accesskeyid",
    "auth",
    "authorization",
    # cookies, sessions, CSRF
    "cookie",
    "session",
    "phpsessid",
    "connect.sid",
    "csrf",
    "xsrf",
    "symfony",
    # client addresses kept by metadata (the address column follows
    # TELEMETRY_IP_MODE)
    "ip_address",
    "remote_addr",
    "x_forwarded_for",
    "x_real_ip",
    # payment cards
    "credit_card",
    "creditcard",
    "card_number",
    "cvv",
)

#: What a redacted value is stored as.
REDACTED = "[REDACTED]"
#: What a value nested deeper than :data:`MAX_DEPTH` is stored as (MySQL
#: refuses JSON documents nested deeper than 100 levels).
TOO_DEEP = "[TOO DEEP]"
MAX_DEPTH = 20

IP_MODES = ("full", "truncate", "hash", "none")

# Control characters and lone surrogates (which no database can store as
# UTF-8). Metadata keeps tab, newline and carriage return: JSON escapes them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_IN_JSON = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_escaped = json.encoder.encode_basestring  # exact JSON form, in C
#: Whole lists of numbers or of strings encoded in C (separators ", ").
_encode_numbers = json.JSONEncoder(allow_nan=False, check_circular=False).encode
_encode_strings = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
_NONE = type(None)
#: What the encoded copy (Privacy._encoded) reads; anything else takes the walk.
_ENCODED = frozenset((dict, list, tuple, str, int, float, bool, _NONE))
_LEAVES = frozenset((str, int, float, bool, _NONE))
_INT = frozenset((int,))
_LISTS = frozenset((list, tuple))
_chain = itertools.chain.from_iterable
#: The JSON text the walk's size counts (", " and ": " separators).
_encode_json = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=True
).encode
#: Its C parts, called directly (JSONEncoder.encode and JSONDecoder.decode
#: are two Python calls each around them).
_c_encoder = getattr(json.encoder, "c_make_encoder", None)
_scan_json: t.Callable[[str, int], tuple[t.Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _not_json(value: object) -> t.NoReturn:
    raise TypeError(f"{type(value).__name__} value")


def _decode(text: str) -> t.Any:
    """``json.loads(text)`` of a text that :func:`_encode` made."""
    value, end = _scan_json(text, 0)
    if end != len(text):
        raise ValueError("extra data")
    return value


#: In that text, what the walk removes: controls other than tab, newline and
#: carriage return (escaped as \b, \f or \u00XX; a literal backslash
#: before b, f or u takes the walk too), C1 controls and lone surrogates.
_WALK_CLEANS = re.compile(r"\\[bfu]|[\x7f-\x9f\ud800-\udfff]")
#: What an ASCII key's skeleton drops (NUL separates the keys).
_NOT_IN_SKELETON = re.compile("[^a-z0-9\x00]")
#: An escape of JSON text: a backslash and its letter, or ``\uXXXX``.
_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)")
_NUMBERS = frozenset((int, float, bool, _NONE))
_STR = frozenset((str,))
_CONTAINERS = frozenset((dict, list))
_CACHE_SIZE = 4096
#: Longest key the redaction cache keeps: the cache holds at most
#: _CACHE_SIZE keys of this size (about 1 MiB at worst).
_CACHED_KEY = 64
#: Metadata of at most this many items, flat, is checked without the walk
#: (see Privacy.metadata).
_FLAT_ITEMS = 32
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

    def __init__(self, privacy: Privacy, limit: int) -> None:
        self.privacy = privacy
        self.limit = limit
        self.size = 0
        self.path: set[int] = set()

    def add(self, size: int) -> None:
        self.size += size
        if self.size > self.limit:
            raise _TooBig

    def mapping(self, value: t.Mapping[t.Any, t.Any], depth: int) -> dict[str, t.Any]:
        ident = id(value)
        path = self.path
        if ident in path:
            raise _NotJSON("circular reference")
        # {} and ", " between items; at least 5 bytes more ("": 0) per item:
        # an object too big for the limit stops here, however many items.
        count = len(value)
        limit = self.limit
        size = self.size + 2 + 2 * max(0, count - 1)
        if size + 5 * count > limit:
            self.size = size + 5 * count
            raise _TooBig
        path.add(ident)
        out: dict[str, t.Any] = {}
        redacts = self.privacy.redacts
        cache = self.privacy._keys.get  # redacts()'s cache, looked up inline
        # The sizes are kept in a local; the common keys and values (short
        # printable strings, booleans, None) are handled inline.
        for key, item in value.items():
            if type(key) is str and len(key) <= 256 and key.isprintable():
                name = key
                size += _size(key) + 2  # "key": (quotes and escapes included)
            elif type(key) is int and -_FLAT_INT < key < _FLAT_INT:
                name = int.__repr__(key)
                size += len(name) + 4
            else:
                self.size = size
                name = self.key(key)
                size = self.size + 2
            if size > limit:
                self.size = size
                raise _TooBig
            if name in out:
                raise _NotJSON(f"two keys are {name!r} once made strings")
            hit = cache(name)
            if hit is None:
                hit = redacts(name)
            if hit:
                size += len(REDACTED) + 2
                out[name] = REDACTED
            else:
                kind = type(item)
                if kind is str and len(item) <= 256 and item.isprintable():
                    size += _size(item)
                    out[name] = item
                elif item is None or kind is bool:
                    size += 5 if item is False else 4
                    out[name] = item
                elif kind is int and -_FLAT_INT < item < _FLAT_INT:
                    size += len(int.__repr__(item))
                    out[name] = item
                else:
                    self.size = size
                    out[name] = self.value(item, depth + 1)
                    size = self.size
            if size > limit:
                self.size = size
                raise _TooBig
        self.size = size
        path.discard(ident)
        return out

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
            # Ints within 10**18 print in at most 19 characters; a list with
            # a bigger one takes the walk, which stops before printing it.
            numbers = (
                value if _NONE not in kinds else [v for v in value if v is not None]
            )
            if numbers and not -_FLAT_INT < min(numbers) <= max(numbers) < _FLAT_INT:
                return None
            try:
                text = _encode_numbers(value)
            except ValueError:  # NaN or an infinity: the walk says which
                return None
            self.add(len(text) - 2 * count)  # less the counted "[]" and ", "
            return list(value)
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

    def key(self, key: object) -> str:
        if isinstance(key, str) and len(key) + 2 > self.limit - self.size:
            self.add(len(key) + 2)  # too big: stop before reading it
        text = _key(key, self.limit - self.size)
        self.add(_size(text))
        return text

    def value(self, value: t.Any, depth: int) -> t.Any:
        kind = type(value)
        if kind is str or isinstance(value, str):
            if len(value) + 2 > self.limit - self.size:
                self.add(len(value) + 2)  # too big: stop before reading it
            text = value if kind is str else str.__str__(value)
            if not text.isprintable():
                text = _CONTROL_IN_JSON.sub("", text)
            self.add(_size(text))
            return text
        if value is None or kind is bool:
            self.add(5 if value is False else 4)
            return value
        if isinstance(value, int):
            number = int(value)
            digits = int(number.bit_length() * 0.30103)
            if digits > self.limit - self.size:
                self.add(digits)  # too big: stop before printing it
            try:
                self.add(len(int.__repr__(number)))
            except ValueError:  # more digits than Python will print
                raise _NotJSON(f"integer of {number.bit_length()} bits") from None
            return number
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _NotJSON(f"{value!r} is not a JSON number")
            real = float(value)
            self.add(len(float.__repr__(real)))
            return real
        if depth >= MAX_DEPTH and (
            isinstance(value, (list, tuple)) or is_mapping(value)
        ):
            self.add(len(TOO_DEEP) + 2)
            return TOO_DEEP
        if isinstance(value, (list, tuple)):
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
        if is_mapping(value):
            return self.mapping(value, depth)
        raise _NotJSON(f"{kind.__name__} value")


class Privacy:
    """Applies the privacy settings to what an event carries.

    :param redact_keys: metadata keys to redact, matched as described for
        :data:`DEFAULT_REDACT_KEYS`.
    :param max_bytes: metadata whose JSON form is larger is replaced by
        ``{"metadata_truncated": True, "original_bytes_at_least": n, ...}``.
    :param ip_mode: ``full``, ``truncate`` (IPv4 /24, IPv6 /48), ``hash``
        (HMAC-SHA256 with ``ip_key``, 32 hex digits) or ``none``; checked
        with the rest of the configuration (``TELEMETRY_IP_MODE``).
    """

    def __init__(
        self,
        *,
        redact_keys: t.Iterable[str] = DEFAULT_REDACT_KEYS,
        max_bytes: int = 8192,
        ip_mode: str = "full",
        ip_key: bytes | None = None,
    ) -> None:
        needles = sorted({skeleton(k) for k in redact_keys}, key=len, reverse=True)
        self._redact = (
            re.compile("|".join(map(re.escape, needles))).search if needles else None
        )
        self._keys: dict[str, bool] = {}
        self.max_bytes = max_bytes
        self.ip_mode = ip_mode
        self._ip_key = ip_key or b""
        self._ips: dict[str, str | None] = {}

    # -- keys -------------------------------------------------------------

    def redacts(self, key: str) -> bool:
        """Whether a metadata value under ``key`` is stored as ``[REDACTED]``.

        Keys are compared by their :func:`skeleton`, so ``"Pass Word"``,
        ``"pass\u200bword"``, a full-width ``"\uff50assword"``, a Cyrillic
        ``"p\u0430ssword"`` and ``"pa\u0300ssword"`` all match ``password``.
        """
        hit = self._keys.get(key)
        if hit is None:
            hit = self._redact is not None and self._redact(skeleton(key)) is not None
            if len(key) <= _CACHED_KEY:  # the cache is bounded in bytes too
                if len(self._keys) >= _CACHE_SIZE:
                    self._keys.clear()
                self._keys[key] = hit
        return hit

    # -- metadata -----------------------------------------------------------

    def metadata(self, metadata: t.Mapping[t.Any, t.Any]) -> dict[str, t.Any]:
        """A clean, JSON-ready copy of ``metadata``, or the size marker.

        Raises :class:`TelemetryError` for what JSON cannot hold (bytes,
        sets, arbitrary objects, NaN and infinities, cycles, keys that are
        not str, int, float, bool or None, two keys that are the same once
        made strings, such as ``1`` and ``"1"``). The walk stops as soon as
        the size passes ``max_bytes``, so any input costs about as much as
        metadata of that size.

        The common metadata skips the walk: a dict of at most 32 items with
        printable str keys and str values of at most 256 characters, ints,
        finite floats, booleans and None, whose JSON form fits. It cannot
        hold a cycle, nested values or two keys equal once made strings, so
        it is copied at once (one C call: another thread changing it
        meanwhile cannot slip an unchecked value in), then checked and sized
        in place with the walk's rules. Anything else, or too big, goes to
        the walk from the start.
        """
        if type(metadata) is not dict or len(metadata) > _FLAT_ITEMS:
            return self._walked(metadata)
        out = metadata.copy()
        keys = self._keys
        # {} and ", " between items, then "key": and each value.
        size = 2 * len(out) or 2
        for key, item in out.items():
            if not (type(key) is str and len(key) <= 256 and key.isprintable()):
                return self._walked(metadata)
            if key.isascii():
                size += len(key) + 4 if key.isalnum() else len(_escaped(key)) + 2
            else:
                size += _size(key) + 2
            hit = keys.get(key)
            if hit is None:
                hit = self.redacts(key)
            if hit:
                out[key] = REDACTED
                size += len(REDACTED) + 2
                continue
            kind = type(item)
            if kind is str:
                if not (len(item) <= 256 and item.isprintable()):
                    return self._walked(metadata)
                if item.isascii():
                    size += len(item) + 2 if item.isalnum() else len(_escaped(item))
                else:
                    size += _size(item)
            elif item is None or kind is bool:
                size += 5 if item is False else 4
            elif kind is int and -_FLAT_INT < item < _FLAT_INT:
                size += len(int.__repr__(item))
            elif kind is float and item - item == 0.0:  # finite
                size += len(float.__repr__(item))
            else:
                return self._walked(metadata)
        if size > self.max_bytes:
            return self._walked(metadata)  # it makes the marker, with its size
        return out

    def _walked(self, metadata: t.Mapping[t.Any, t.Any]) -> dict[str, t.Any]:
        """:meth:`metadata` by the walk: any mapping, any depth; metadata
        that needs none of the walk's changes is copied by :meth:`_encoded`
        instead."""
        fast = self._encoded(metadata)
        if fast is not None:
            return fast
        walk = _Walk(self, self.max_bytes)
        try:
            clean = walk.mapping(metadata, 0)
        except _TooBig:
            return {
                "metadata_truncated": True,
                "original_bytes_at_least": walk.size,
                "max_bytes": self.max_bytes,
            }
        except _NotJSON as exc:
            raise TelemetryError(f"metadata is not JSON-serialisable: {exc}") from None
        return clean

    def _encoded(self, metadata: t.Mapping[t.Any, t.Any]) -> dict[str, t.Any] | None:
        """The walk's copy of ``metadata`` made by ``json.dumps`` and
        ``json.loads`` (in C), when nothing in it needs the walk; else None.

        A first pass reads it level by level, a few C calls per level (not
        one step per item): only dicts, lists, tuples, str, ints within
        10**18, floats, booleans and None; no container deeper than the walk
        keeps; str or int keys (an int key equal to a str key of its dict
        once printed takes the walk, which refuses it); at least as many
        bytes as items already under the cap, so that the encoding that
        follows is bounded whatever the shape (shared lists included). The
        text must then fit the cap, hold no character the walk removes
        (escaped controls, C1 controls, lone surrogates) and no key that
        redacts. Anything else goes to the walk, which also makes the size
        marker and the error messages.
        """
        limit = self.max_bytes
        level: list[t.Any] = [metadata]
        keys: set[str] = set()
        least = 0  # bytes the JSON text has at least
        for _ in range(MAX_DEPTH):
            kinds = set(map(type, level))
            if not kinds <= _ENCODED:
                return None
            # One byte an item, a string's characters and quotes.
            least += len(level)
            if len(kinds) == 1:  # the common case: no list to filter
                ints = strs = lists = dicts = level
            else:
                ints = [v for v in level if type(v) is int]
                strs = [v for v in level if type(v) is str]
                lists = [v for v in level if type(v) is list or type(v) is tuple]
                dicts = [v for v in level if type(v) is dict]
            if int in kinds and not -_FLAT_INT < min(ints) <= max(ints) < _FLAT_INT:
                return None
            if str in kinds:
                least += sum(map(len, strs)) + len(strs)
            if least > limit:
                return None
            if kinds <= _LEAVES:
                break
            if not kinds & _LISTS:
                lists = []
            if dict not in kinds:
                dicts = []
            items = sum(map(len, lists))
            pairs = sum(map(len, dicts))
            # A second bracket each, ", " between most items, "": per pair.
            count = len(lists) + len(dicts)
            least += count + 2 * max(0, items + pairs - count) + 4 * pairs
            if least > limit:  # checked before the next level is read
                return None
            if pairs:
                names = set(_chain(dicts))
                kinds = set(map(type, names))
                if kinds == _STR:
                    if max(map(len, names)) > 8:  # long keys, counted each time
                        least += sum(map(len, _chain(dicts)))
                elif (
                    kinds == _INT and -_FLAT_INT < min(names) <= max(names) < _FLAT_INT
                ):
                    names = set(map(int.__repr__, names))
                else:  # other keys, or int and str keys (1 and "1")
                    return None
                keys |= names
            if least > limit:
                return None
            level = [*_chain(lists)]
            if pairs:
                level += _chain(map(dict.values, dicts))
            if not level:
                break
        else:
            return None  # containers nested deeper than the walk keeps
        try:
            if _c_encoder is None:
                text = _encode_json(metadata)
            else:  # what JSONEncoder.encode does, without its two calls
                encoder = _c_encoder(
                    {}, _not_json, _escaped, None, ": ", ", ", False, False, False
                )
                text = "".join(encoder(metadata, 0))
        except (ValueError, TypeError, RecursionError):
            return None
        if len(text) > limit:
            return None
        if ("\\" in text or not text.isprintable()) and _WALK_CLEANS.search(text):
            return None
        if not text.isascii() and len(text.encode("utf-8")) > limit:
            return None
        # Redaction is checked on the text about to be decoded, not on the
        # keys read above: a key another thread adds to the caller's dict
        # in between is in the text. Values are in it too: one holding a
        # redacted name sends the metadata to the walk (slower, never wrong).
        if keys and self._redact is not None:
            # The text's escapes (\n, \u0009, \") stand for characters the
            # skeleton drops: dropped here too, letters and all.
            probe = _ESCAPE.sub("", text) if "\\" in text else text
            probe = (
                _NOT_IN_SKELETON.sub("", probe.lower())
                if probe.isascii()
                else skeleton(probe)
            )
            if self._redact(probe):
                return None
        clean: dict[str, t.Any] = _decode(text)
        return clean

    # -- client address -------------------------------------------------------

    def ip(self, address: str | None) -> str | None:
        """The client address as ``ip_mode`` stores it (at most 45 characters)."""
        if address is None or self.ip_mode == "full":
            return address
        if self.ip_mode == "none":
            return None
        if len(address) > 64:  # not an address: nothing worth hashing or caching
            return None
        ips = self._ips
        if address in ips:
            return ips[address]
        done: str | None
        if self.ip_mode == "hash":
            done = hmac.new(
                self._ip_key, address.encode("utf-8", "replace"), hashlib.sha256
            ).hexdigest()[:32]
        else:
            done = _truncate(address)
        if len(ips) >= _CACHE_SIZE:
            ips.clear()
        ips[address] = done
        return done


#: Letters of other scripts that look like a Latin letter, and the letter:
#: the Cyrillic and Greek rows of Unicode TS #39's confusables that matter
#: for names (fullwidth and other compatibility forms are NFKD's work).
_LOOKALIKES = str.maketrans(
    {
        other: latin
        for latin, others in {
            "a": "\u0410\u0430\u0391\u03b1",
            "b": "\u0412\u0432\u042c\u044c\u0392\u03b2",
            "c": "\u0421\u0441\u03f2\u03f9",
            "d": "\u0500\u0501",
            "e": "\u0415\u0435\u0395\u03b5",
            "g": "\u0261",
            "h": "\u041d\u043d\u04ba\u04bb\u0397\u03b7",
            "i": "\u0406\u0456\u0399\u03b9\u0131",
            "j": "\u0408\u0458\u03f3\u037f",
            "k": "\u041a\u043a\u039a\u03ba",
            "l": "\u04c0\u04cf",
            "m": "\u041c\u043c\u039c\u03bc",
            "n": "\u039d",
            "o": "\u041e\u043e\u039f\u03bf",
            "p": "\u0420\u0440\u03a1\u03c1",
            "q": "\u051a\u051b",
            "s": "\u0405\u0455",
            "t": "\u0422\u0442\u03a4\u03c4",
            "u": "\u03c5",
            "v": "\u03bd",
            "w": "\u051c\u051d",
            "x": "\u0425\u0445\u03a7\u03c7",
            "y": "\u0423\u0443\u04ae\u04af\u03a5\u03b3",
            "z": "\u0396\u03b6",
        }.items()
        for other in others
    }
)


def skeleton(key: str) -> str:
    """``key`` as redaction compares it: decomposed (NFKD) without its
    combining marks, look-alike letters of other scripts made Latin,
    case-folded, letters and digits only.

    ``"Pass Word"``, ``"pass\u200bword"``, a full-width ``"\uff50assword"``,
    a Cyrillic ``"p\u0430ssword"`` and ``"pa\u0300ssword"`` all have the
    skeleton ``password``.
    """
    if key.isascii():
        folded = key.casefold()
        if folded.isalnum():
            return folded
    else:
        # Before and after folding: an upper-case letter looks like the
        # Latin capital (Greek Nu: N), its lower case may not (nu: v).
        decomposed = unicodedata.normalize("NFKD", key).translate(_LOOKALIKES)
        folded = decomposed.casefold().translate(_LOOKALIKES)
    # Combining marks, separators and format characters are not alphanumeric.
    return "".join(c for c in folded if c.isalnum())


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


def _truncate(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
