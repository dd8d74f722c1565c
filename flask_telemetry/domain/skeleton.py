"""How redaction compares keys: their skeleton, and the search for the
skeletons of the redacted names in it.

A key is redacted when its skeleton contains the skeleton of a redacted
name (see :data:`~.privacy.DEFAULT_REDACT_KEYS`), so ``"X-Api-Key"`` and
``"user_password_hash"`` are redacted as well as ``"password"``.
"""

from __future__ import annotations

import re
import typing as t
import unicodedata

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

#: What an ASCII skeleton drops: every byte but a-z, 0-9 and NUL (which
#: separates keys joined to be searched at once), for ``bytes.translate``.
_ASCII_DROPPED = bytes(
    b for b in range(128) if not (chr(b).isalnum() and not chr(b).isupper()) and b
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
    return "".join(filter(str.isalnum, folded))


def joined_skeleton(keys: t.Iterable[str]) -> str:
    """The skeletons of ``keys`` joined by NUL (which no skeleton holds),
    to be searched at once: ASCII keys by one ``bytes.translate``."""
    text = "\x00".join(keys)
    if text.isascii():
        return text.encode("ascii").lower().translate(None, _ASCII_DROPPED).decode()
    return "\x00".join(map(skeleton, text.split("\x00")))


def needle_search(names: t.Iterable[str]) -> t.Callable[[str], object] | None:
    """A search of a skeleton for the skeleton of any of ``names`` (truthy
    when one is found), or None when there is none to find.

    A name that holds another (``authorization`` holds ``auth``) adds
    nothing to the search and is left out; the rest are one regular
    expression shaped as a trie (``c(?:ookie|srf|vv)``), which the regular
    expression engine tries at a cost that does not grow with their number
    as an alternation of them all does.
    """
    needles = sorted({s for s in map(skeleton, names) if s}, key=len)
    kept = [n for i, n in enumerate(needles) if not any(m in n for m in needles[:i])]
    if not kept:
        return None
    return re.compile(_trie(kept)).search


def _trie(words: list[str]) -> str:
    """A regular expression matching any of ``words``, none of which is a
    prefix of another."""
    by_first: dict[str, list[str]] = {}
    for word in words:
        by_first.setdefault(word[0], []).append(word[1:])
    parts = [
        re.escape(first) + ("" if rests == [""] else _trie(rests))
        for first, rests in sorted(by_first.items())
    ]
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
