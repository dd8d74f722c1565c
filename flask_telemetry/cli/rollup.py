"""``flask telemetry rollup``, and ``report``'s comparisons of two windows or
two releases (``--baseline``, ``--baseline-release``).

A comparison exits with status 3 when a route got worse beyond the
threshold, so that a deploy pipeline can gate on it (0: nothing got worse;
2: a usage error).
"""

from __future__ import annotations

import datetime as dt
import json

import click
from flask.cli import with_appcontext

from ..reading import UNMATCHED
from ..reading.compare import RouteChange, compare
from ..reading.display import visible
from .common import TimeType, print_table, state

#: The exit status of a comparison that found a route worse.
WORSE_EXIT = 3


@click.command("rollup")
@with_appcontext
@click.option(
    "--since",
    type=TimeType(),
    default=None,
    help="Re-fold from the start of this day (a backfill, or rows later than "
    "the grace period): 30d, or a date. Default: from the last rollup.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")
def rollup_command(since: dt.datetime | dt.timedelta | None, as_json: bool) -> None:
    """Fold the request ends of closed minutes into telemetry_rollups.

    Run it every few minutes (cron, a worker's beat, a systemd timer): it
    takes up from where it stopped. Idempotent; several at once are safe.
    """
    telemetry = state()
    if not telemetry.settings.ROLLUPS:
        # Not a usage error: the command is right, the app is not set up.
        raise click.ClickException(
            "Rollups are off: set TELEMETRY_ROLLUPS = True, then run "
            "`flask db migrate` and `flask db upgrade`."
        )
    result = telemetry.rollup(since=since)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    if result.since is None:
        click.echo("Nothing to fold.")
    else:
        click.echo(
            f"Folded {result.rows:,} request ends from "
            f"{result.since:%Y-%m-%d %H:%M} to {result.until:%Y-%m-%d %H:%M} UTC "
            f"into {result.buckets:,} buckets in {result.seconds:.2f} s."
        )
    if result.aged:
        click.echo(f"Aged out {result.aged:,} buckets.")


def report_comparison(
    *,
    since: dt.datetime | dt.timedelta,
    until: dt.datetime | dt.timedelta | None,
    route: str | None,
    release: str | None,
    baseline: dt.timedelta | None,
    baseline_release: str | None,
    threshold: float,
    top: int,
    as_json: bool,
) -> None:
    """``report`` with ``--baseline`` or ``--baseline-release``: each route
    in both, the ones that got worse first; exit status 3 if any did."""
    if baseline is not None and baseline_release is not None:
        raise click.UsageError(
            "Give --baseline (an earlier window) or --baseline-release, not both."
        )
    if baseline_release is not None and release is None:
        raise click.UsageError("--baseline-release compares with --release: give both.")
    telemetry = state()
    now = dt.datetime.now(dt.UTC)
    start = now - since if isinstance(since, dt.timedelta) else since
    end = now - until if isinstance(until, dt.timedelta) else until or now
    current = telemetry.request_summary(
        since=start, until=end, route=route, release=release
    )
    if baseline_release is not None:
        before = telemetry.request_summary(
            since=start, until=end, route=route, release=baseline_release
        )
        against = f"release {baseline_release}"
    else:
        assert baseline is not None
        before = telemetry.request_summary(
            since=start - baseline, until=end - baseline, route=route, release=release
        )
        against = (
            f"{start - baseline:%Y-%m-%d %H:%M} to {end - baseline:%Y-%m-%d %H:%M}"
        )
    changes = compare(current, before, threshold=threshold)
    worse = [c for c in changes if c.worse]
    _show(
        changes,
        start=start,
        end=end,
        release=release,
        against=against,
        threshold=threshold,
        top=top,
        as_json=as_json,
    )
    if worse:
        raise SystemExit(WORSE_EXIT)


def _show(
    changes: list[RouteChange],
    *,
    start: dt.datetime,
    end: dt.datetime,
    release: str | None,
    against: str,
    threshold: float,
    top: int,
    as_json: bool,
) -> None:
    """A comparison's routes, as JSON or as a table."""
    worse = [c for c in changes if c.worse]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "since": start.isoformat(),
                    "until": end.isoformat(),
                    "release": release,
                    "baseline": against,
                    "threshold": threshold,
                    "worse": len(worse),
                    "routes": [c.as_dict() for c in changes[:top]],
                },
                indent=2,
            )
        )
    else:
        what = f"release {release}, " if release is not None else ""
        click.echo(
            f"Requests from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC "
            f"({what}against {against})"
        )
        _print(changes[:top])
        if len(changes) > top:
            click.echo(f"({len(changes) - top} more route(s); --top to see them)")
        click.echo(
            f"{len(worse)} route(s) worse beyond {threshold:.0%}."
            if worse
            else "No route got worse."
        )


def _print(changes: list[RouteChange]) -> None:
    def figure(change: RouteChange, side: str, field: str) -> str:
        found = getattr(change, side)
        if found is None:
            return "-"
        value = getattr(found, field)
        if field == "error_rate":
            return f"{value * 100:.1f}%"
        return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"

    def delta(change: RouteChange, field: str) -> str:
        found = change.change(field)
        if found is None:
            return "-"
        return "new" if found == float("inf") else f"{found:+.0%}"

    rows = []
    for c in changes:
        rows.append(
            [
                ("! " if c.worse else "  ") + visible(c.route_name or UNMATCHED),
                figure(c, "current", "requests"),
                figure(c, "baseline", "requests"),
                figure(c, "current", "error_rate"),
                figure(c, "baseline", "error_rate"),
                figure(c, "current", "p50_ms"),
                delta(c, "p50_ms"),
                figure(c, "current", "p95_ms"),
                delta(c, "p95_ms"),
                figure(c, "current", "p99_ms"),
                delta(c, "p99_ms"),
                "; ".join(c.worse),
            ]
        )
    print_table(
        [
            "route",
            "requests",
            "before",
            "error%",
            "before",
            "p50_ms",
            "change",
            "p95_ms",
            "change",
            "p99_ms",
            "change",
            "worse",
        ],
        rows,
    )


__all__ = ["WORSE_EXIT", "report_comparison", "rollup_command"]
