"""What may be stored: redaction, size limits, clean strings, client address modes.

Everything here runs when an event is recorded, before it is queued, so a
secret never sits in the in-memory queue and a caller changing its metadata
afterwards cannot change (or break) the stored event. The work is sized for
the request thread, with three copies of metadata, cheapest first: a small
flat dict is checked in one loop; anything else that needs no change is
encoded by the C encoder (:mod:`.encoded`), and queued as that text; the
rest takes the walk (:mod:`.walk`), which counts the JSON size as it goes.
Key decisions are cached, and each copy's cost is bounded by the byte cap.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import typing as t

from ..exceptions import TelemetryError
from ..storage.row import JsonText
from .encoded import decode, encoded_text
from .skeleton import needle_search, skeleton
from .walk import (
    _FLAT_INT,
    MAX_DEPTH,
    REDACTED,
    TOO_DEEP,
    _escaped,
    _NotJSON,
    _size,
    _TooBig,
    _Walk,
    clean_text,
    is_mapping,
)

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "IP_MODES",
    "MAX_DEPTH",
    "REDACTED",
    "TOO_DEEP",
    "Privacy",
    "_NotJSON",
    "_TooBig",
    "_Walk",
    "clean_text",
    "is_mapping",
    "skeleton",
]

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

IP_MODES = ("full", "truncate", "hash", "none")

_CACHE_SIZE = 4096
#: Longest key the redaction cache keeps: the cache holds at most
#: _CACHE_SIZE keys of this size (about 1 MiB at worst).
_CACHED_KEY = 64
#: Metadata of at most this many items, flat, is checked without the walk
#: (see Privacy.metadata).
_FLAT_ITEMS = 32
#: What those items may be, and their longest str (a key or a value).
_FLAT_VALUES = frozenset((str, int, float, bool, type(None)))
_FLAT_TEXT = 256


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
        self._redact = needle_search(redact_keys)
        self._keys: dict[str, int] = {}
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
        return self._key_bytes(key) < 0

    def _key_bytes(self, key: str) -> int:
        """The bytes of ``"key": `` in the JSON text, negative when the value
        under ``key`` is redacted. Kept for short printable keys, the ones
        the flat copy reads (the cache is bounded in bytes too)."""
        known = self._keys.get(key)
        if known is None:
            known = _size(key) + 2
            if self._redact is not None and self._redact(skeleton(key)):
                known = -known
            if len(key) <= _CACHED_KEY and key.isprintable():
                if len(self._keys) >= _CACHE_SIZE:
                    self._keys.clear()
                self._keys[key] = known
        return known

    # -- metadata -----------------------------------------------------------

    def metadata(self, metadata: t.Mapping[t.Any, t.Any]) -> dict[str, t.Any]:
        """A clean, JSON-ready copy of ``metadata``, or the size marker.

        Raises :class:`TelemetryError` for what JSON cannot hold (bytes,
        sets, arbitrary objects, NaN and infinities, cycles, keys that are
        not str, int, float, bool or None, two keys that are the same once
        made strings, such as ``1`` and ``"1"``). Any input costs about as
        much as metadata of ``max_bytes``: see :meth:`stored`.
        """
        stored = self.stored(metadata)
        if isinstance(stored, JsonText):
            clean: dict[str, t.Any] = decode(stored)
            return clean
        return stored

    def stored(self, metadata: t.Mapping[t.Any, t.Any]) -> dict[str, t.Any] | JsonText:
        """:meth:`metadata` as the recorder queues it: the copy, or the
        JSON text of the copy (:class:`~flask_telemetry.storage.row.JsonText`)
        when the encoded copy made it.

        The common metadata skips every walk: a dict of at most 32 items
        with printable str keys and str values of at most 256 characters,
        ints, finite floats, booleans and None, whose JSON form fits. It
        cannot hold a cycle, nested values or two keys equal once made
        strings, so it is copied at once (one C call: another thread
        changing it meanwhile cannot slip an unchecked value in), then
        checked and sized in place with the walk's rules
        (:meth:`_flat`). Anything else needing no change is encoded
        (:func:`.encoded.encoded_text`); the rest, or too big, takes the
        walk (:meth:`_walked`).
        """
        if (
            type(metadata) is dict
            and len(metadata) <= _FLAT_ITEMS
            and set(map(type, metadata.values())) <= _FLAT_VALUES
        ):
            flat = self._flat(metadata.copy())
            if flat is not None:
                return flat
        text = encoded_text(metadata, self.max_bytes, self._redact, self.redacts)
        if text is None:
            return self._walked(metadata)
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        # Too big: the text is the copy, so its size is exact.
        return JsonText(text) if size <= self.max_bytes else self._marker(size)

    def _flat(self, out: dict[t.Any, t.Any]) -> dict[str, t.Any] | None:
        """``out``, a copy of a small dict of leaves, checked and sized in
        place, or None for the walk (a key or value it changes, or too big:
        the walk makes the marker)."""
        cache = self._keys
        # {} and ", " between items, then "key": and each value.
        size = 2 * len(out) or 2
        for key, item in out.items():
            if type(key) is not str:
                return None
            known = cache.get(key)  # see _key_bytes
            if known is None:
                if len(key) > _FLAT_TEXT or not key.isprintable():
                    return None
                known = self._key_bytes(key)
            if known < 0:
                out[key] = REDACTED
                size += len(REDACTED) + 2 - known
            elif (
                type(item) is str
                and len(item) <= _FLAT_TEXT
                and item.isascii()
                and item.isprintable()
            ):
                # No control character: only quotes and backslashes escape.
                size += known + (
                    len(item) + 2 if item.isalnum() else len(_escaped(item))
                )
            else:
                value = _flat_value_size(item)
                if value < 0:
                    return None
                size += known + value
        return out if size <= self.max_bytes else None

    def _walked(self, metadata: t.Mapping[t.Any, t.Any]) -> dict[str, t.Any]:
        """:meth:`metadata` by the walk: any mapping, any depth."""
        walk = _Walk(self, self.max_bytes)
        try:
            clean = walk.mapping(metadata, 0)
        except _TooBig:
            return self._marker(walk.size)
        except _NotJSON as exc:
            raise TelemetryError(f"metadata is not JSON-serialisable: {exc}") from None
        return clean

    def _marker(self, size: int) -> dict[str, t.Any]:
        """What metadata over ``max_bytes`` is stored as: ``size`` is its
        JSON size, or the size counted when the walk stopped."""
        return {
            "metadata_truncated": True,
            "original_bytes_at_least": size,
            "max_bytes": self.max_bytes,
        }

    def _encoded(self, metadata: t.Mapping[t.Any, t.Any]) -> dict[str, t.Any] | None:
        """The encoded copy of ``metadata`` made objects again, or None for
        what it leaves to the walk (see :func:`.encoded.encoded_text`)."""
        text = encoded_text(metadata, self.max_bytes, self._redact, self.redacts)
        if text is None or len(text.encode("utf-8")) > self.max_bytes:
            return None
        clean: dict[str, t.Any] = decode(text)
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


def _flat_value_size(item: object) -> int:
    """Bytes of a flat dict's value in JSON, or -1 for one the walk takes."""
    kind = type(item)
    if kind is str:
        text = t.cast(str, item)
        if len(text) > _FLAT_TEXT or not text.isprintable():
            return -1
        return len(_escaped(text)) if text.isascii() else _size(text)
    if item is None or kind is bool:
        return 5 if item is False else 4
    if kind is int:
        number = t.cast(int, item)
        return len(int.__repr__(number)) if -_FLAT_INT < number < _FLAT_INT else -1
    real = t.cast(float, item)
    return len(float.__repr__(real)) if real - real == 0.0 else -1  # finite


def _truncate(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
