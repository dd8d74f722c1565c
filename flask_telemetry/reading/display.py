"""Stored text as the pages and the CLI show it: nothing invisible.

A stored route, user agent or metadata value may hold characters that change
how the text around them reads without showing themselves: a right-to-left
override (U+202E) prints the rest backwards, isolates (U+2066 to U+2069) and
embeddings reorder it, zero-width characters hide a difference, a line
separator or a terminal escape (ESC, U+001B) breaks a CLI line or writes over
it. :func:`visible` shows each of them as its escape (``\\u202e``), so the
dashboard and the CLI print what is stored, not what it pretends to be.
"""

from __future__ import annotations

import typing as t
import unicodedata

#: The general categories escaped: controls (C0, DEL, C1, tab and newline
#: too: a cell is one line), format characters (bidi controls, isolates,
#: zero-width characters, tags), surrogates, unassigned code points (a
#: newer Unicode may make them format characters) and the line and
#: paragraph separators.
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Cn", "Zl", "Zp"))


def visible(text: t.Any, *, lines: bool = False) -> str:
    """``text`` (made a string; ``None`` is ``""``) with every invisible
    control or format character shown as ``\\uXXXX`` (``\\UXXXXXXXX`` past
    the BMP). Printable text, the common case, is returned as it is.

    With ``lines``, newlines are kept: for a text of several lines made here,
    such as indented JSON (which escapes the controls in its strings).
    """
    if text is None:
        return ""
    string: str = text if type(text) is str else str(text)
    if string.isprintable():  # no control, format or separator but the space
        return string
    return "".join(
        c
        if (lines and c == "\n") or unicodedata.category(c) not in _HIDDEN
        else _escape(c)
        for c in string
    )


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
