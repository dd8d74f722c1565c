"""The encoded copy: metadata that needs none of the walk's changes, copied
as its JSON text by the C encoder, a few C calls per level of nesting
instead of one step of the walk per item.

:class:`~.privacy.Privacy` tries it for what the flat check cannot take;
anything it refuses goes to the walk (:mod:`.walk`), which also makes the
size marker and the error messages. The text it makes is the text stored
(:class:`~flask_telemetry.storage.schema.JsonText`): the queue holds it as
it is, and the writer binds it without encoding it again.
"""

from __future__ import annotations

import itertools
import json.encoder
import re
import typing as t
from collections.abc import Mapping

from .skeleton import joined_skeleton
from .walk import _FLAT_INT, _NONE, _STR, MAX_DEPTH, REDACTED, _escaped

#: What the encoded copy reads; anything else takes the walk.
_ENCODED = frozenset((dict, list, tuple, str, int, float, bool, _NONE))
_LEAVES = frozenset((str, int, float, bool, _NONE))
_INT = frozenset((int,))
_LISTS = frozenset((list, tuple))
_chain = itertools.chain.from_iterable
#: More bytes than any cap: what :func:`_keys_bytes` counts for keys the
#: walk takes.
_REFUSED = 1 << 62
_REDACTED_JSON = _escaped(REDACTED)
#: When the whole text is searched for redacted names rather than its keys
#: (see _may_name_a_key): at most this many letters and digits, and as
#: many more a key. Searching costs by the letter, reading keys by the key.
_LETTERS = 256
_LETTERS_A_KEY = 16
#: The JSON text the walk's size counts (", " and ": " separators).
_encode_json = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=True
).encode
#: Its C parts, called directly (JSONEncoder.encode and JSONDecoder.decode
#: are two Python calls each around them).
_c_encoder = getattr(json.encoder, "c_make_encoder", None)
_scan_json: t.Callable[[str, int], tuple[t.Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

#: In that text, what the walk removes: controls other than tab, newline and
#: carriage return (escaped as \b, \f or \u00XX; a literal backslash
#: before b, f or u takes the walk too), C1 controls and lone surrogates.
_WALK_CLEANS = re.compile(r"\\[bfu]|[\x7f-\x9f\ud800-\udfff]")
#: What :func:`_cleaned` removes from a text holding no escaped backslash:
#: the escapes of controls (the encoder writes \u00XX for those that have
#: no short escape) and the raw characters of _WALK_CLEANS.
_CLEANED = re.compile(r"\\[bf]|\\u[0-9a-fA-F]{4}|[\x7f-\x9f\ud800-\udfff]")
#: An escape of JSON text: a backslash and its letter, or ``\uXXXX``.
_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)")
#: The keys of a JSON text made with ": " after each key: a string followed
#: by ": ", which no value is. Without a backslash in the text no string
#: holds a quote; with one, escapes are read in pairs, possessively, so a
#: search started at any quote reads escapes as the encoder wrote them.
_KEY = re.compile(r'"([^"]*+)": ')
_ESCAPED_KEY = re.compile(r'"((?:[^"\\]++|\\.)*+)": ')


def _not_json(value: object) -> t.NoReturn:
    raise TypeError(f"{type(value).__name__} value")


def decode(text: str) -> t.Any:
    """``json.loads(text)`` of a text that :func:`encoded_text` made."""
    value, end = _scan_json(text, 0)
    if end != len(text):
        raise ValueError("extra data")
    return value


def encoded_text(
    metadata: Mapping[t.Any, t.Any],
    limit: int,
    search: t.Callable[[str], object] | None,
    redacts: t.Callable[[str], bool],
) -> str | None:
    """The walk's copy of ``metadata`` as its JSON text, made by the C
    encoder; None for what it leaves to the walk. The text may be longer
    than ``limit``: it is then the exact size of the copy.

    A first pass (:func:`_bounded`) reads it level by level: only dicts,
    lists, tuples, str, ints within 10**18, floats, booleans and None; no
    container deeper than the walk keeps; str or int keys (an int key equal
    to a str key of its dict once printed takes the walk, which refuses
    it); at least as many bytes as items already under the cap, so that the
    encoding that follows is bounded whatever the shape (shared lists
    included). In the text, what the walk removes from values (escaped
    controls, C1 controls, lone surrogates) is removed (:func:`_cleaned`),
    and the value of each key ``redacts`` names, found when ``search``
    finds a redacted name in the skeletons of the keys, is replaced
    (:func:`_redacted`), as the walk does.
    """
    if not _bounded(metadata, limit):
        return None
    try:
        if _c_encoder is None:
            text: str = _encode_json(metadata)
        else:
            # What JSONEncoder.encode does, without its two calls, and
            # without the circular check: a cycle never passes _bounded
            # (its levels never end).
            encoder = _c_encoder(
                None, _not_json, _escaped, None, ": ", ", ", False, False, False
            )
            text = "".join(encoder(metadata, 0))
    except (ValueError, TypeError, RecursionError):
        return None
    if ("\\" in text or not text.isprintable()) and _WALK_CLEANS.search(text):
        cleaned = _cleaned(text)
        if cleaned is None:
            return None
        text = cleaned
    # Redaction is read from the keys of the text, not from the keys read
    # by the first pass: a key another thread adds to the caller's dict in
    # between is in the text.
    if search is not None and _may_name_a_key(text, search):
        return _redacted(text, redacts)
    return text


def _may_name_a_key(text: str, search: t.Callable[[str], object]) -> bool:
    """Whether ``search`` finds a redacted name in the skeleton of a key of
    ``text``, or may (never False when it does).

    An ASCII text with few letters and digits for its keys is searched
    whole, in one translation: a name in a key's skeleton is in the
    skeleton of the whole text, whose escapes are dropped as the keys'
    are. Otherwise the keys are read from the text (:func:`_key_skeletons`),
    which costs by the key rather than by the letter.
    """
    if text.isascii():
        whole = _ESCAPE.sub("", text) if "\\" in text else text
        probe = joined_skeleton((whole,))
        if len(probe) <= _LETTERS_A_KEY * text.count('": ') + _LETTERS:
            return bool(search(probe))
    return bool(search(_key_skeletons(text)))


def _cleaned(text: str) -> str | None:
    """``text`` without the escaped controls, C1 controls and lone
    surrogates of its values, or None for the walk: when a key holds one
    (two keys could become one), or when the text holds an escaped
    backslash (an escape is then not read alone)."""
    if "\\\\" in text:
        return None
    keys = _ESCAPED_KEY.findall(text) if "\\" in text else _KEY.findall(text)
    if any(map(_WALK_CLEANS.search, keys)):
        return None
    return _CLEANED.sub("", text)


def _redacted(text: str, redacts: t.Callable[[str], bool]) -> str:
    """``text`` with the value of every key ``redacts`` names replaced by
    the redacted marker.

    Each distinct key is asked once (as the walk asks it, unescaped); the
    keys named make one pattern, ``"key": ``, which can only end where a
    key of the text ends (a quote inside a string is escaped), and each
    value it finds is read to its end by the JSON scanner (in C). A key
    named inside a value already replaced is left with it.
    """
    escaped = "\\" in text
    keys = set(_ESCAPED_KEY.findall(text) if escaped else _KEY.findall(text))
    named = [key for key in keys if redacts(_unescaped(key) if escaped else key)]
    if not named:
        return text
    found = re.compile('"(?:' + "|".join(map(re.escape, named)) + ')": ')
    pieces: list[str] = []
    last = 0
    for match in found.finditer(text):
        if match.start() < last:
            continue
        start = match.end()
        pieces += (text[last:start], _REDACTED_JSON)
        last = _scan_json(text, start)[1]
    pieces.append(text[last:])
    return "".join(pieces)


def _unescaped(key: str) -> str:
    """A key as its JSON text writes it, read back."""
    if "\\" not in key:
        return key
    value: str = _scan_json(f'"{key}"', 0)[0]
    return value


def _bounded(metadata: Mapping[t.Any, t.Any], limit: int) -> bool:
    """Whether ``metadata`` holds only what the encoded copy reads, with
    fewer bytes than ``limit`` counted level by level before any encoding
    (a few C calls a level, none an item)."""
    level: list[t.Any] = [metadata]
    least = 0  # bytes the JSON text has at least
    for _ in range(MAX_DEPTH):
        kinds = set(map(type, level))
        if not kinds <= _ENCODED:
            return False
        # The common case, one kind a level, has no list to filter.
        ints, strs, lists, dicts = (level,) * 4 if len(kinds) == 1 else _by_kind(level)
        # One byte an item, a string's characters and quotes.
        least += len(level) + (sum(map(len, strs)) + len(strs) if str in kinds else 0)
        if int in kinds and not -_FLAT_INT < min(ints) <= max(ints) < _FLAT_INT:
            return False
        if kinds <= _LEAVES:
            return least <= limit
        lists = lists if kinds & _LISTS else []
        dicts = dicts if dict in kinds else []
        pairs = sum(map(len, dicts))
        # A second bracket each, ", " between most items, "": per pair;
        # the sum is checked before the keys and the next level are read.
        count = len(lists) + len(dicts)
        least += count + 2 * max(0, sum(map(len, lists)) + pairs - count) + 4 * pairs
        if pairs and least <= limit:
            least += _keys_bytes(dicts)
        if least > limit:
            return False
        level = [*_chain(lists)]
        if pairs:
            level += _chain(map(dict.values, dicts))
        elif not level:
            return True
    return False  # containers nested deeper than the walk keeps


def _by_kind(level: list[t.Any]) -> tuple[list[t.Any], ...]:
    """The ints, strs, lists (and tuples) and dicts of a level, in one loop."""
    ints: list[t.Any] = []
    strs: list[t.Any] = []
    lists: list[t.Any] = []
    dicts: list[t.Any] = []
    into = {int: ints, str: strs, list: lists, tuple: lists, dict: dicts}
    for value in level:
        kind = into.get(type(value))
        if kind is not None:
            kind.append(value)
    return ints, strs, lists, dicts


def _keys_bytes(dicts: list[dict[t.Any, t.Any]]) -> int:
    """What the keys of ``dicts`` add to the bytes counted (long str keys
    their length, counted each time), or more than any cap for keys the
    walk takes: other types, or int and str keys at one level (``1`` and
    ``"1"``)."""
    names = set(_chain(dicts))
    kinds = set(map(type, names))
    if kinds == _STR:
        return sum(map(len, _chain(dicts))) if max(map(len, names)) > 8 else 0
    if kinds == _INT and -_FLAT_INT < min(names) <= max(names) < _FLAT_INT:
        return 0
    return _REFUSED


def _key_skeletons(text: str) -> str:
    """The skeletons of the keys of ``text`` (as :func:`joined_skeleton`
    joins them): every key (and perhaps a few other pieces of the text).
    Escapes (``\\n``, ``\\u0009``, ``\\"``) stand for characters the
    skeleton drops: dropped here too, letters and all."""
    if "\\" not in text:
        return joined_skeleton(_KEY.findall(text))
    return joined_skeleton(_ESCAPE.sub("", key) for key in _ESCAPED_KEY.findall(text))
