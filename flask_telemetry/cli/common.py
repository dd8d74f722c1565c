"""What the ``flask telemetry`` commands share: the application's telemetry
state, the parameter types (times, column text) and the printing of tables.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import typing as t

import click
from flask import current_app

from .._wiring import AppState, app_state
from ..reading.display import visible

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SHORT = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_ISO_DURATION = re.compile(
    r"P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)
_FORMS = (
    "90m, 24h, 7d, an ISO 8601 duration (PT90M) or date and time (2026-11-27T10:00Z)"
)

#: How often ``tail --follow`` looks for new events, in seconds.


def parse_time(value: str) -> dt.datetime | dt.timedelta:
    """A time the commands accept: a timedelta back from now, or a datetime.

    Raises ValueError for anything else.
    """
    text = value.strip()
    short = _SHORT.fullmatch(text)
    if short:
        return dt.timedelta(seconds=float(short.group(1)) * _UNITS[short.group(2)])
    iso = _ISO_DURATION.fullmatch(text.upper())
    if iso and text.upper() not in ("P", "PT") and any(iso.groupdict().values()):
        return dt.timedelta(
            seconds=sum(float(v) * _UNITS[k] for k, v in iso.groupdict().items() if v)
        )
    try:
        when = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{value!r} is not a time") from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


class TimeType(click.ParamType[dt.datetime | dt.timedelta, t.Any]):
    """A click parameter of :func:`parse_time` (durations only, if asked)."""

    name = "time"

    def __init__(self, *, durations_only: bool = False) -> None:
        self.durations_only = durations_only

    def convert(
        self, value: t.Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.datetime | dt.timedelta:
        """Parse ``value``; a usage error naming the option when it is no time."""
        if isinstance(value, (dt.datetime, dt.timedelta)):
            return value
        try:
            parsed = _in_range(parse_time(str(value)))
        except OverflowError:
            self.fail(f"{value!r} is out of range: years 1 to 9999 (UTC).", param, ctx)
        except ValueError:
            forms = "90m, 24h, 7d or an ISO 8601 duration (P7D, PT90M)"
            self.fail(
                f"{value!r} is not a time: use "
                f"{forms if self.durations_only else _FORMS}.",
                param,
                ctx,
            )
        if self.durations_only and isinstance(parsed, dt.datetime):
            self.fail(
                f"{value!r} is a date: use a duration such as 7d or P7D.", param, ctx
            )
        return parsed


def _in_range(value: dt.datetime | dt.timedelta) -> dt.datetime | dt.timedelta:
    """``value`` when it names a UTC time of years 1 to 9999; OverflowError if not."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    _ = dt.datetime.now(dt.UTC) - value  # before year 1: OverflowError
    return value


class Text(click.ParamType[str, t.Any]):
    """Text a column can hold: at most ``length`` characters, no NUL.

    PostgreSQL refuses a NUL in any text and a lone surrogate cannot be
    sent to any database: both are usage errors here, not driver errors.
    """

    name = "text"

    def __init__(self, length: int) -> None:
        self.length = length

    def convert(
        self, value: t.Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        """``value`` as it is; a usage error naming the option when unusable."""
        text = str(value)
        if len(text) > self.length:
            self.fail(f"at most {self.length} characters, not {len(text)}.", param, ctx)
        if "\x00" in text:
            self.fail("a NUL character cannot be stored or searched for.", param, ctx)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(f"{text!r} is not valid UTF-8.", param, ctx)
        return text


def state() -> AppState:
    """The telemetry state of the current application (the commands run in
    its app context)."""
    return app_state(current_app._get_current_object())  # type: ignore[attr-defined]


def iso(value: dt.datetime | dt.timedelta | None) -> str | None:
    """``value`` (a timedelta back from now) as an ISO 8601 UTC time, or None."""
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        value = dt.datetime.now(dt.UTC) - value
    return value.astimezone(dt.UTC).isoformat()


def shown_time(value: dt.datetime | dt.timedelta | None) -> str:
    """``value`` as a reader sees it in a heading (None: ``now``)."""
    if value is None:
        return "now"
    if isinstance(value, dt.timedelta):
        value = dt.datetime.now(dt.UTC) - value
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def echo_json(data: t.Any) -> None:
    """Print ``data`` as indented JSON (times and the like as text)."""
    click.echo(json.dumps(data, indent=2, default=str))


def print_table(
    headers: t.Sequence[str],
    rows: t.Sequence[t.Sequence[t.Any]],
    under: t.Sequence[t.Sequence[str]] = (),
) -> None:
    """Print rows as columns, numbers right-aligned; ``under[i]``'s lines
    are printed as they are under row ``i``."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [
        bool(rows) and all(isinstance(r[i], (int, float)) for r in rows)
        for i in range(len(headers))
    ]

    def line(values: t.Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    click.echo(line(headers))
    for index, row in enumerate(cells):
        click.echo(line(row))
        for extra in under[index] if under else ():
            click.echo(extra)


def cell(value: t.Any) -> str:
    """A table cell: ``-`` for None, numbers with separators, text made visible."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return visible(value)
