"""The figures of an ``http_request_end`` row's metadata, declared once.

:data:`FIGURES` is the declaration: each key the request hooks write into
the metadata of ``http_request_end``, in the order they write it, with
when it is written (``domain/mapping.py`` writes the metadata from it) and
how a reader checks it (``reading/_dialects.py`` reads it in SQL on each
database, the dashboard's pages in Python with :func:`read`). A row
written by anything may hold any JSON there: a figure is read only when it
passes its check, else it is None.

Adding a figure is: a :class:`Figure` here, where its value comes from
(:class:`~flask_telemetry.domain.request_end.RequestEnd` and the recorder),
and tests.
"""

from __future__ import annotations

import dataclasses
import math
import typing as t

#: How a figure is checked when it is read:
#:
#: - ``integer``: a JSON integer from ``low`` to ``high`` (not a float, not
#:   a bool);
#: - ``number``: a JSON number from ``low`` to ``high`` (not a bool),
#:   read as a float;
#: - ``text``: a JSON string, its first ``high`` characters;
#: - ``flag``: JSON ``true`` (anything else is false, never None);
#: - ``present``: any JSON value but null (true or false, never None).
Check: t.TypeAlias = t.Literal["integer", "number", "text", "flag", "present"]


@dataclasses.dataclass(frozen=True, slots=True)
class Figure:
    """One key of the metadata of ``http_request_end``."""

    name: str
    #: The Python type of its value as written.
    kind: type
    #: How readers check it (see :data:`Check`); None: not read.
    check: Check | None = None
    low: float = 0
    high: float = 0
    #: In every request end (its absence or a bad value makes the whole
    #: row unreadable): the readers' ``readable`` is all of them read.
    required: bool = False
    #: Figures read together (the readers' ``db``: the row is readable and
    #: every figure of the group is read).
    group: str | None = None
    #: When it is written: ``always``, ``set`` (when the value of the
    #: figure ``when_set``, itself by default, is not None) or ``true``
    #: (when the value is true and the figure ``unless`` is None).
    written: t.Literal["always", "set", "true"] = "set"
    when_set: str | None = None
    unless: str | None = None
    #: Written rounded to this many decimals.
    digits: int | None = None
    #: Written as a word of ASCII letters of at most this many characters,
    #: else cleaned and cut to it.
    word: int | None = None


#: Durations in ms a request end is read with: up to 10^12 ms (31 years).
MAX_DURATION_MS = 1e12

#: The figures, in the order the metadata holds them.
FIGURES: tuple[Figure, ...] = (
    Figure("method", str, written="always", word=16),
    Figure("status", int, "integer", 100, 999, required=True, written="always"),
    Figure(
        "duration_ms",
        float,
        "number",
        0.0,
        MAX_DURATION_MS,
        required=True,
        written="always",
        digits=3,
    ),
    # The class name of the exception that ended the request.
    Figure("exception", str, "present"),
    Figure("slow", bool, "flag", written="true", unless="exception"),
    # Set when sampling is on: 1.0 for a request always kept, else the rate.
    Figure("sample_rate", float, "number", 1e-6, 1.0),
    # From the request's ``traceparent``.
    Figure("trace_id", str),
    Figure("parent_id", str, when_set="trace_id"),
    # TELEMETRY_RELEASE.
    Figure("release", str, "text", high=64),
    # The request's statements and their time (the SQLAlchemy integration).
    Figure("db_count", int, "integer", 0, 999_999_999, group="db"),
    Figure("db_ms", float, "number", 0.0, MAX_DURATION_MS, group="db", digits=3),
)

#: Figure by name.
BY_NAME: dict[str, Figure] = {f.name: f for f in FIGURES}
#: The figures readers check, in declaration order.
READ: tuple[Figure, ...] = tuple(f for f in FIGURES if f.check is not None)


def read(figure: Figure, value: object) -> t.Any:
    """``value`` (from a stored metadata dict) as the readers read
    ``figure``: the value when it passes the check, else None (False for
    ``flag`` and ``present``)."""
    check = figure.check
    if check == "integer":
        if type(value) is int and figure.low <= value <= figure.high:
            return value
        return None
    if check == "number":
        if (
            type(value) in (int, float)
            and math.isfinite(t.cast(float, value))
            and figure.low <= t.cast(float, value) <= figure.high
        ):
            return float(t.cast(float, value))
        return None
    if check == "text":
        return value[: int(figure.high)] if type(value) is str else None
    if check == "flag":
        return value is True
    if check == "present":
        return value is not None
    raise ValueError(f"{figure.name} is not read.")


def read_key(metadata: object, name: str) -> t.Any:
    """The figure ``name`` of a stored metadata (any value) as readers read
    it (see :func:`read`); None when the metadata is no dict."""
    figure = BY_NAME[name]
    if not isinstance(metadata, dict):
        return read(figure, None)
    return read(figure, metadata.get(name))
