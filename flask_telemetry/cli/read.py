"""``flask telemetry trace | tail | prune``, and the read side's commands.

Each command prints aligned tables, or with ``--json`` the API's records
under their field names. Times take ``90m``, ``24h``, ``7d`` (also ``s``
and ``w``), an ISO 8601 duration (``PT90M``, ``P7D``) or an ISO 8601 date
and time (``2026-11-27T10:00:00Z``; without an offset, UTC).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import typing as t

import click
from flask.cli import with_appcontext

from ..reading import UNMATCHED, EventRecord
from ..reading.display import visible
from ..storage.row import length as column_length
from ..storage.vocabulary import EventType, Severity
from .common import (
    Text,
    TimeType,
    cell,
    echo_json,
    print_table,
    state,
)
from .report import report_command
from .rollup import rollup_command

FOLLOW_INTERVAL = 1.0
_sleep = time.sleep


# -- trace ----------------------------------------------------------------------


@click.command("trace")
@with_appcontext
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")
def trace_command(request_id: str, as_json: bool) -> None:
    """Every event of one request, oldest first, with its metadata whole.

    Offsets are in ms from the request's start (its end less its duration,
    as on the dashboard's trace page).
    """
    telemetry = state()
    found: list[EventRecord] = []
    before = None
    while _storable(request_id, column_length("request_id")):
        page = telemetry.events(request_id=request_id, limit=1000, before_id=before)
        found += page
        if len(page) < 1000:
            break
        before = page[-1].id
    if not found:
        raise click.ClickException(
            f"No telemetry events for request id {request_id!r} "
            "(expired, not recorded, or recorded on another database)."
        )
    found.sort(key=lambda r: (r.occurred_at, r.id))
    start = min(r.occurred_at - dt.timedelta(milliseconds=_duration(r)) for r in found)
    offsets = [(r.occurred_at - start) / dt.timedelta(milliseconds=1) for r in found]
    if as_json:
        echo_json(
            [
                {**r.as_dict(), "offset_ms": o}
                for r, o in zip(found, offsets, strict=True)
            ]
        )
        return
    click.echo(
        f"Request {visible(request_id)}: {len(found)} event(s) from "
        f"{start.isoformat(timespec='milliseconds')}"
    )
    print_table(
        ["offset_ms", "event_type", "severity", "route", "actor"],
        [
            [
                round(o, 3),
                r.event_type,
                r.severity,
                _route(r),
                _actor(r),
            ]
            for r, o in zip(found, offsets, strict=True)
        ],
        under=[_metadata_lines(r.metadata) for r in found],
    )


def _storable(text: str, length: int) -> bool:
    """Whether a column of ``length`` could hold ``text`` (no NUL, UTF-8)."""
    if len(text) > length or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _duration(record: EventRecord) -> float:
    """The duration of an ``http_request_end`` in ms; 0 for other events and
    for a duration that is no number of ms a request can last."""
    if record.event_type != EventType.HTTP_REQUEST_END.value:
        return 0.0
    metadata = record.metadata if isinstance(record.metadata, dict) else {}
    value = metadata.get("duration_ms")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value) if 0 < value < _LONGEST_MS else 0.0


#: Durations at or above this (ten years, in ms) are not believed.
_LONGEST_MS = 10 * 365 * 86_400_000


def _metadata_lines(metadata: t.Any) -> list[str]:
    """One ``key=value`` line per metadata key, values in JSON, indented."""
    if not metadata:
        return []
    if not isinstance(metadata, dict):
        return [cell(f"    {_json(metadata)}")]
    return [cell(f"    {key}={_json(value)}") for key, value in metadata.items()]


def _json(value: t.Any) -> str:
    return json.dumps(value, default=str)


def _actor(record: EventRecord) -> str:
    if record.actor_id is None:
        return record.actor_type
    return f"{record.actor_type}:{record.actor_id}"


def _metadata(metadata: t.Any) -> str:
    """The metadata whole, as compact JSON."""
    if not metadata:
        return ""
    return json.dumps(metadata, separators=(",", ":"), default=str)


# -- tail -----------------------------------------------------------------------


@click.command("tail")
@with_appcontext
@click.option(
    "-n",
    "--lines",
    "count",
    type=click.IntRange(min=1, max=10_000),
    default=20,
    show_default=True,
    help="Events shown.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option(
    "--event-type",
    type=Text(column_length("event_type")),
    default=None,
    help="Only this event type (one the app records).",
)
@click.option(
    "--route",
    type=Text(column_length("route_name")),
    default=None,
    help="Only events of this endpoint name or glob (api.*).",
)
@click.option(
    "--request-id",
    type=Text(column_length("request_id")),
    default=None,
    help="Only events of this request id.",
)
@click.option(
    "--min-severity",
    type=click.Choice([s.value for s in Severity]),
    default=None,
    help="Only events at or above this severity.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object a line.")
def tail_command(
    count: int,
    follow: bool,
    event_type: str | None,
    route: str | None,
    request_id: str | None,
    min_severity: str | None,
    as_json: bool,
) -> None:
    """The latest events, oldest first; --follow keeps printing new ones."""
    telemetry = state()
    if event_type is not None and event_type not in telemetry.event_types:
        raise click.BadParameter(
            f"{event_type!r} is no event type this app records; use one of "
            + ", ".join(sorted(telemetry.event_types))
            + ".",
            param_hint="'--event-type'",
        )
    filters: dict[str, t.Any] = {
        "event_type": event_type,
        "route": route,
        "request_id": request_id,
        "min_severity": min_severity,
    }
    latest: list[EventRecord] = telemetry.events(limit=count, **filters)
    printer = _printer(as_json)
    for record in reversed(latest):
        printer(record)
    if not follow:
        return
    last = latest[0].id if latest else _newest_id(telemetry)
    try:
        while True:
            _sleep(FOLLOW_INTERVAL)
            new: list[EventRecord] = []
            before = None
            while True:  # newest first, down to the last one printed
                page = telemetry.events(
                    limit=1000, after_id=last, before_id=before, **filters
                )
                new += page
                if len(page) < 1000:
                    break
                before = page[-1].id
            for record in reversed(new):
                printer(record)
            if new:
                last = new[0].id
    except KeyboardInterrupt:
        pass


def _route(record: EventRecord) -> str:
    """The route of an event: its name, the unmatched label for a request no
    route matched, "-" for an event outside any request."""
    if record.route_name is not None:
        return record.route_name
    return "-" if record.request_id is None else UNMATCHED


def _newest_id(telemetry: t.Any) -> int:
    newest = telemetry.events(limit=1)
    return int(newest[0].id) if newest else 0


def _printer(as_json: bool) -> t.Callable[[EventRecord], None]:
    if as_json:
        return lambda r: click.echo(json.dumps(r.as_dict(), default=str))

    def line(record: EventRecord) -> None:
        when = record.occurred_at.isoformat(timespec="milliseconds")
        click.echo(
            visible(
                f"{when}  {record.severity:<8}  {record.event_type:<20}  "
                f"{_route(record):<24}  {record.request_id or '-'}  "
                f"{_metadata(record.metadata)}".rstrip()
            )
        )

    return line


# -- prune ----------------------------------------------------------------------

#: Exit status of ``prune`` when --max-seconds left expired rows.
EXIT_INCOMPLETE = 3


@click.command("prune")
@with_appcontext
@click.option(
    "--older-than",
    type=TimeType(durations_only=True),
    default=None,
    help="Age of the events to delete [default: TELEMETRY_RETENTION_DAYS].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=1_000_000),
    default=5000,
    show_default=True,
    help="Rows per DELETE transaction.",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0, max=86_400 * 366),
    default=None,
    help="Start no batch after this many seconds; exit 3 if rows are left.",
)
@click.option("--dry-run", is_flag=True, help="Count, delete nothing.")
@click.option("--yes", is_flag=True, help="Allow an age under one day.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")
def prune_command(
    older_than: dt.timedelta | None,
    batch_size: int,
    max_seconds: float | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete events older than the retention period, in short batches.

    Exits with status 0 when no expired event is left, 3 when
    --max-seconds stopped it first (run it again).
    """
    if max_seconds is not None and math.isnan(max_seconds):
        raise click.BadParameter("nan is not a number.", param_hint="'--max-seconds'")
    days = None
    if older_than is not None:
        days = older_than / dt.timedelta(days=1)
        if days < 1 and not yes:
            raise click.BadParameter(
                f"{_age(older_than)} is under one day: pass --yes to delete "
                "events that recent.",
                param_hint="'--older-than'",
            )
    result = state().prune(
        older_than_days=days,
        batch_size=batch_size,
        max_seconds=max_seconds,
        dry_run=dry_run,
    )
    if as_json:
        echo_json(result.as_dict())
    else:
        cutoff = result.cutoff.isoformat(timespec="seconds")
        if dry_run:
            click.echo(f"Would delete {result.deleted:,} event(s) older than {cutoff}.")
        else:
            click.echo(
                f"Deleted {result.deleted:,} event(s) older than {cutoff} "
                f"in {result.batches} batch(es), {result.seconds:.2f} s."
            )
        if result.partitions_dropped:
            verb = "Would drop" if dry_run else "Dropped"
            click.echo(
                f"{verb} {result.partitions_dropped} partition(s): "
                + ", ".join(result.partition_names)
            )
        if result.remaining:
            click.echo(
                f"{result.remaining:,} expired event(s) left: --max-seconds ran "
                "out. Run it again."
            )
    if result.remaining:
        raise SystemExit(EXIT_INCOMPLETE)


def _age(value: dt.timedelta) -> str:
    seconds = value.total_seconds()
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


#: The commands added to the ``flask telemetry`` group.
COMMANDS = (
    report_command,
    trace_command,
    tail_command,
    prune_command,
    rollup_command,
)

__all__ = ["COMMANDS"]
