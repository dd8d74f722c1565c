"""Mapping to the storage DTO, in two steps: checked values, then the row.

The recorder checks the caller's values and cleans the metadata on the
caller's thread, and keeps the result as a :data:`Pending` tuple. The row
(:class:`~flask_telemetry.storage.row.TraceEvent`) is built from it by
:func:`build_values` (or :func:`build_event`): on the writer thread in
async mode, so the request thread only pays for the checks.

A tuple of strings and numbers is also the cheapest thing to keep in a
queue: Python's garbage collector stops tracking it once a collection or
two have seen it (the tuple of facts inside first, then the outer one),
so a long queue costs the application's collections nothing. That is why the
metadata of ``http_request_end`` waits as a tuple of the request's facts (a
dict would keep the whole tuple tracked), and is made into its dict by the
writer.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from ..storage import figures
from ..storage import row as ev
from .privacy import clean_text
from .request_end import RequestEnd

#: The figures of a finished request, one per :data:`~..storage.figures.FIGURES`
#: in its order (``(method, status, duration_ms, exception, slow,
#: sample_rate, trace_id, parent_id, release, db_count, db_ms)``), each
#: None when the request has none: see :func:`request_end_metadata`.
EndFacts: t.TypeAlias = tuple[t.Any, ...]
#: The values of one event in column order (:data:`~..storage.row.COLUMNS`),
#: event type, severity and actor type resolved to their strings, metadata
#: cleaned, the client address as the privacy settings store it, and the
#: time (``occurred_at``) in seconds since the epoch. The metadata is a
#: dict, or for ``http_request_end`` the :data:`EndFacts` its dict is made
#: from. Built by :func:`pending` or a :func:`packer`.
Pending: t.TypeAlias = tuple[t.Any, ...]

_UTC = dt.UTC
_from_timestamp = dt.datetime.fromtimestamp


def _text(value: str | None, size: int) -> str | None:
    if value is None:
        return None
    if type(value) is not str:  # a str subclass, or a hostile non-str
        value = str.__str__(value) if isinstance(value, str) else None
        if value is None:
            return None
    if len(value) <= size and value.isprintable():
        return value  # the common case: nothing to do
    return clean_text(value, size) or None


# -- made from the columns ---------------------------------------------------
#
# The functions below are written out as straight-line code from
# ev.COLUMNS once, at import (as dataclasses writes a class's __init__):
# they run once or twice per event, where a loop over the columns would
# cost several times as much.


def _pending_source() -> str:
    params = ", ".join(f"{c.name}=None" if c.nullable else c.name for c in ev.COLUMNS)
    values = "".join(f"{c.name}, " for c in ev.COLUMNS)
    return f"def pending(*, {params}):\n    return ({values})\n"


#: The :data:`Pending` tuple of an event, built by column name (columns not
#: given are None): ``pending(*, actor_type, actor_id=None, ...)``.
pending: t.Callable[..., Pending] = ev.define("pending", _pending_source(), {})


def packer(*names: str) -> t.Callable[..., Pending]:
    """A function of the values of the columns ``names``, in that order,
    that returns their :data:`Pending` tuple (the other columns None: they
    must be nullable). It is the cheapest way to make the tuple from a
    caller's own order: one call, no keywords to match."""
    unknown = set(names) - set(ev.FIELDS)
    missing = [c.name for c in ev.COLUMNS if c.name not in names and not c.nullable]
    if unknown or missing or len(set(names)) != len(names):
        raise ValueError(f"Bad columns for a packer: {names!r}")
    values = "".join(f"{c.name}, " if c.name in names else "None, " for c in ev.COLUMNS)
    source = f"def pack({', '.join(names)}):\n    return ({values})\n"
    pack: t.Callable[..., Pending] = ev.define("pack", source, {})
    return pack


def _build_source() -> tuple[str, dict[str, t.Any]]:
    scope: dict[str, t.Any] = {
        "_text": _text,
        "_UTC": _UTC,
        "_from_timestamp": _from_timestamp,
        "request_end_metadata": request_end_metadata,
    }
    made = []
    for i, c in enumerate(ev.COLUMNS):
        value = f"v{i}"  # not the column's name: it could shadow a global
        if c.free_text:
            assert c.length is not None, c.name
            made.append(f"_text({value}, {c.length})")
        elif c.kind is dict:
            made.append(
                f"request_end_metadata({value}) if type({value}) is tuple else {value}"
            )
        elif c.kind is dt.datetime:
            made.append(f"_from_timestamp({value}, _UTC)")
        else:
            made.append(value)
    names = "".join(f"v{i}, " for i in range(len(ev.COLUMNS)))
    body = "".join(f"        {value},\n" for value in made)
    source = f"def build_values(pending):\n    ({names}) = pending\n"
    source += f"    return (\n{body}    )\n"
    return source, scope


def build_event(pending: Pending) -> ev.TraceEvent:
    """Build the row to store from a :data:`Pending` tuple (see
    :func:`build_values`) as a :class:`~flask_telemetry.storage.row.TraceEvent`."""
    return ev.from_values(build_values(pending))


def request_end_facts(end: RequestEnd, release: str | None = None) -> EndFacts:
    """What the metadata of ``http_request_end`` is made of, as a tuple."""
    db = end.db
    values = {
        "method": end.method,
        "status": end.status,
        "duration_ms": end.duration_ms,
        "exception": end.exception,
        "slow": end.slow,
        "sample_rate": end.sample_rate,
        "trace_id": end.trace_id,
        "parent_id": end.parent_id,
        "release": release,
        "db_count": None if db is None else db[0],
        "db_ms": None if db is None else db[1],
    }
    return tuple(values[f.name] for f in figures.FIGURES)


def _metadata_source() -> str:
    """The source of :func:`request_end_metadata`, written out from the
    figures' declaration (it runs once per request end, on the writer)."""
    local = {f.name: f"v{i}" for i, f in enumerate(figures.FIGURES)}
    body = [f"    {', '.join(local.values())}, = facts"]
    for figure in figures.FIGURES:
        if figure.word is not None:
            value, size = local[figure.name], figure.word
            body += [
                f"    if not (len({value}) <= {size} and {value}.isascii() "
                f"and {value}.isalpha()):",
                f"        {value} = clean_text({value}, {size})",
            ]
    always, added = [], []
    for figure in figures.FIGURES:
        value = local[figure.name]
        if figure.digits is not None:
            value = f"round({value}, {figure.digits})"
        if figure.written == "always":
            always.append(f"{figure.name!r}: {value}")
            continue
        if figure.written == "true":
            test = local[figure.name]
            if figure.unless is not None:
                test += f" and {local[figure.unless]} is None"
            value = "True"
        else:
            test = f"{local[figure.when_set or figure.name]} is not None"
        added += [f"    if {test}:", f"        metadata[{figure.name!r}] = {value}"]
    body += [f"    metadata = {{{', '.join(always)}}}", *added, "    return metadata"]
    return "def request_end_metadata(facts):\n" + "\n".join(body) + "\n"


#: The metadata of ``http_request_end`` from its :data:`EndFacts`, written
#: out from :data:`~..storage.figures.FIGURES`: ``method`` (a word, else
#: cleaned), ``status`` and ``duration_ms`` (rounded to the microsecond),
#: then ``exception`` (the class name) or ``slow``, then ``sample_rate`` when
#: sampling is on, then ``trace_id`` and ``parent_id`` when the request
#: carried a ``traceparent``, then ``release`` when one is configured, then
#: ``db_count`` and ``db_ms`` (the request's statements and their time) when
#: the SQLAlchemy integration counted them.
request_end_metadata: t.Callable[[EndFacts], dict[str, t.Any]] = ev.define(
    "request_end_metadata", _metadata_source(), {"clean_text": clean_text}
)


#: Build the row to store from a :data:`Pending` tuple, as its values in
#: column order (what the background writer hands to the storage writer).
#: Free-text fields lose their control characters and are cut to their
#: column sizes rather than rejected; the metadata of ``http_request_end``
#: is made from its facts; ``occurred_at`` becomes an aware UTC datetime
#: with microseconds.
build_values: t.Callable[[Pending], ev.Values] = ev.define(
    "build_values", *_build_source()
)
