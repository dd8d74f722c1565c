"""The time window of a page, read from its query string."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

#: The windows the selector offers, by name.
PRESETS: dict[str, dt.timedelta] = {
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
}
DEFAULT = "1h"
#: The longest custom window a page accepts (every query is bounded by it).
MAX_SPAN = dt.timedelta(days=31)
#: The windows added with rollups on (those the day buckets' retention holds).
LONG_PRESETS: dict[str, dt.timedelta] = {
    "30d": dt.timedelta(days=30),
    "90d": dt.timedelta(days=90),
}


def rules(rollup_days: float | None) -> dict[str, t.Any]:
    """The presets and the longest custom window: with rollups on (their day
    buckets kept ``rollup_days``), up to that, else :data:`MAX_SPAN`."""
    if rollup_days is None:
        return {"presets": PRESETS, "max_span": MAX_SPAN}
    longer = {k: v for k, v in LONG_PRESETS.items() if v.days <= rollup_days}
    return {
        "presets": {**PRESETS, **longer},
        "max_span": max(MAX_SPAN, dt.timedelta(days=rollup_days)),
    }


#: The times a custom window may hold: every database stores them, and the
#: pages' bucket arithmetic stays far from the ends of ``datetime``.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Window:
    """``[since, until)`` in aware UTC, and how the page asked for it."""

    name: str
    since: dt.datetime
    until: dt.datetime
    #: Why the requested window was not used, shown on the page.
    error: str | None = None

    def args(self) -> dict[str, str]:
        """Query arguments that ask for this window again."""
        if self.name == "custom":
            return {
                "window": "custom",
                "since": _local(self.since),
                "until": _local(self.until),
            }
        return {"window": self.name}

    @property
    def span(self) -> dt.timedelta:
        """How long the window is."""
        return self.until - self.since


def parse_window(
    args: t.Mapping[str, str],
    *,
    now: dt.datetime | None = None,
    presets: t.Mapping[str, dt.timedelta] = PRESETS,
    max_span: dt.timedelta = MAX_SPAN,
) -> Window:
    """The window of ``window=1h|24h|7d`` or ``window=custom&since=..&until=..``.

    ``since`` and ``until`` are ISO 8601 (a browser's ``datetime-local``
    value is one), read as UTC when they carry no offset, from
    :data:`EARLIEST` to :data:`LATEST`; ``until`` defaults to now. A bad
    value falls back to the default window with the reason in
    :attr:`Window.error`.
    """
    if now is None:
        # The next whole minute: buckets start on round times.
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        now += dt.timedelta(minutes=1)
    name = args.get("window") or DEFAULT
    if name in presets:
        return Window(name=name, since=now - presets[name], until=now)
    if name != "custom":
        offered = ", ".join(presets)
        return _default(now, f"Unknown window {name!r}: use {offered} or custom.")
    try:
        since = _time(args.get("since", ""), "since")
        until = _time(args.get("until", ""), "until") if args.get("until") else now
    except ValueError as exc:
        return _default(now, str(exc))
    if until <= since:
        return _default(now, "The custom window must end after it starts.")
    if until - since > max_span:
        return _default(now, f"A custom window spans at most {max_span.days} days.")
    return Window(name="custom", since=since, until=until)


def _default(now: dt.datetime, error: str) -> Window:
    return Window(name=DEFAULT, since=now - PRESETS[DEFAULT], until=now, error=error)


def _time(value: str, key: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        # An offset can carry the first or last day of year 1 or 9999
        # past what a datetime holds: OverflowError.
        parsed = parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ValueError(
            f"{key} must be a date and time in ISO 8601 "
            f"(2026-01-31T14:00), not {value[:40]!r}."
        ) from None
    if not EARLIEST <= parsed < LATEST:
        raise ValueError(
            f"{key} must be from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}, "
            f"not {value[:40]!r}."
        )
    return parsed


def _local(when: dt.datetime) -> str:
    """UTC, as a ``datetime-local`` input shows it."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M")
