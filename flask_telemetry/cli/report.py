"""``flask telemetry report``: requests per route and event counts, or with
``--baseline`` / ``--baseline-release`` a comparison (:mod:`.rollup`).
"""

from __future__ import annotations

import datetime as dt
import typing as t

import click
from flask.cli import with_appcontext

from ..reading import UNMATCHED, RouteSummary, Summaries
from ..reading.compare import DEFAULT_THRESHOLD
from ..storage.rollup_model import RELEASE_LENGTH
from ..storage.row import length as column_length
from .common import Text, TimeType, echo_json, iso, print_table, shown_time, state
from .rollup import report_comparison


def _db_cells(r: RouteSummary) -> list[t.Any]:
    if not r.db_requests:
        return [None, None, None, None]
    share = None if r.db_share is None else round(r.db_share * 100, 1)
    return [r.mean_db_count, r.mean_db_ms, r.p95_db_ms, share]


# -- report ---------------------------------------------------------------------


@click.command("report")
@with_appcontext
@click.option(
    "--since", type=TimeType(), default="24h", show_default=True, help="Window start."
)
@click.option("--until", type=TimeType(), default=None, help="Window end (now).")
@click.option(
    "--route",
    type=Text(column_length("route_name")),
    default=None,
    help="Endpoint name or glob (api.*); the events section too.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Routes shown.",
)
@click.option(
    "--release",
    type=Text(RELEASE_LENGTH),
    default=None,
    help="Only the requests of this release (TELEMETRY_RELEASE).",
)
@click.option(
    "--baseline",
    type=TimeType(durations_only=True),
    default=None,
    help="Compare with the same window this long before (7d).",
)
@click.option(
    "--baseline-release",
    type=Text(RELEASE_LENGTH),
    default=None,
    help="Compare --release with this release over the same window.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, max=100),
    default=DEFAULT_THRESHOLD,
    show_default=True,
    help="A comparison flags a route whose p95 grew by more than this share.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")
def report_command(
    since: dt.datetime | dt.timedelta,
    until: dt.datetime | dt.timedelta | None,
    route: str | None,
    top: int,
    release: str | None,
    baseline: dt.timedelta | None,
    baseline_release: str | None,
    threshold: float,
    as_json: bool,
) -> None:
    """Requests per route (counts, errors, percentiles) and event counts.

    Routes are ordered by total time spent in them (requests x mean). With
    --baseline or --baseline-release, each route against the baseline, the
    ones that got worse first; the exit status is then 3 when one did.
    """
    _check_window(since, until)
    if baseline is not None or baseline_release is not None:
        report_comparison(
            since=since,
            until=until,
            route=route,
            release=release,
            baseline=baseline,
            baseline_release=baseline_release,
            threshold=threshold,
            top=top,
            as_json=as_json,
        )
        return
    telemetry = state()
    routes: Summaries = telemetry.request_summary(
        since=since, until=until, route=route, release=release
    )
    counts = telemetry.event_counts(since=since, until=until, route=route)
    if as_json:
        echo_json(
            {
                "since": iso(since),
                "until": iso(until) or iso(dt.datetime.now(dt.UTC)),
                "routes": [r.as_dict() for r in routes[:top]],
                "unreadable": routes.unreadable,
                "event_counts": [c.as_dict() for c in counts],
            }
        )
        return
    click.echo(f"Requests from {shown_time(since)} to {shown_time(until)}")
    _print_routes(routes, top)
    click.echo("")
    click.echo("Events" if route is None else f"Events of {route}")
    if not counts:
        click.echo("  (none)")
    else:
        print_table(
            ["event_type", "severity", "count"],
            [[c.event_type, c.severity, c.count] for c in counts],
        )


def _print_routes(routes: Summaries, top: int) -> None:
    """The route table: the ``top`` first, and what was left out."""
    if not routes:
        click.echo("  (no http_request_end events)")
    else:
        # The database's columns when the SQLAlchemy integration counted
        # statements: mean statements, mean and p95 ms, share of the time.
        shown = routes[:top]
        db = any(r.db_requests for r in shown)
        print_table(
            [
                "route",
                "requests",
                "errors",
                "4xx",
                "error%",
                "slow",
                "mean_ms",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "max_ms",
                *(["db_stmts", "db_mean_ms", "db_p95_ms", "db%"] if db else []),
            ],
            [
                [
                    r.route_name or UNMATCHED,
                    r.requests,
                    r.errors,
                    r.client_errors,
                    round(r.error_rate * 100, 1),
                    r.slow,
                    r.mean_ms,
                    r.p50_ms,
                    r.p95_ms,
                    r.p99_ms,
                    r.max_ms,
                    *(_db_cells(r) if db else []),
                ]
                for r in shown
            ],
        )
        if len(routes) > top:
            click.echo(f"({len(routes) - top} more route(s); --top to see them)")
    if routes.unreadable:
        plural = "" if routes.unreadable == 1 else "s"
        click.echo(
            f"({routes.unreadable} row{plural} unreadable: request ends whose status "
            "or duration is no number the request hooks write; left out above)"
        )


def _check_window(
    since: dt.datetime | dt.timedelta, until: dt.datetime | dt.timedelta | None
) -> None:
    """A usage error when --until is before --since (as the dashboard says)."""
    if until is None:  # up to now: a --since still to come reads nothing
        return
    now = dt.datetime.now(dt.UTC)
    start = now - since if isinstance(since, dt.timedelta) else since
    end = now - until if isinstance(until, dt.timedelta) else until
    if end < start:
        raise click.BadParameter(
            f"{shown_time(until)} is before --since ({shown_time(since)}).",
            param_hint="'--until'",
        )
