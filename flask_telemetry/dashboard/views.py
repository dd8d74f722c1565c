"""The pages: each reads a bounded slice of the window and renders it."""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa
from flask import render_template

from .. import reading
from ..reading import Sample, rollups, series
from ..reading import compare as comparing
from ..reading import sample as sampling
from ..storage.vocabulary import EventType
from . import charts, page_charts, params, queries
from .db_events import n_plus_one
from .queries import estimate
from .trace import Trace
from .window import parse_window
from .window import rules as window_rules_for

if t.TYPE_CHECKING:
    from .._wiring import AppState

#: Routes shown in the overview's table (the slowest in total first).
MAX_ROUTES = 100
#: Events on one page of the events list.
PAGE_SIZE = 100
#: Events shown for one request id.
MAX_TRACE_EVENTS = 500
#: Slowest requests listed on a route's page.
SLOWEST = 20
#: ``db_n_plus_one`` events a route's page reads (the newest) for its shapes.
MAX_N_PLUS_ONE_EVENTS = 500
#: Rows a page's figures are read from, about, unless ``exact=1`` is asked
#: for: a window with more than twice as many is read through a
#: :class:`Sample` of about this many (each JSON metadata parsed costs about
#: 3 µs on SQLite).
SAMPLE_ROWS = 8_000

#: Columns the route table sorts by: query value -> (heading, record attribute).
SORTS: dict[str, tuple[str, str]] = {
    "route": ("Route", "route_name"),
    "requests": ("Requests", "requests"),
    "errors": ("Errors", "errors"),
    "error_rate": ("Error rate", "error_rate"),
    "client_errors": ("4xx", "client_errors"),
    "slow": ("Slow", "slow"),
    "mean": ("Mean ms", "mean_ms"),
    "p50": ("p50 ms", "p50_ms"),
    "p95": ("p95 ms", "p95_ms"),
    "p99": ("p99 ms", "p99_ms"),
    "max": ("Max ms", "max_ms"),
    "total": ("Total s", "total_ms"),
}
SEVERITIES = list(params.SEVERITIES)


class Reader:
    """The view functions, reading one application's telemetry state."""

    def __init__(self, telemetry: AppState) -> None:
        self.telemetry = telemetry
        self.source = queries.Source(telemetry)

    # -- pages ----------------------------------------------------------------

    def overview(self) -> str:
        """The overview: traffic charts, the route table, event counts."""
        args = params.current()
        window = parse_window(args, **window_rules(self.telemetry))
        since, until = window.since, window.until
        table = self.source.table()
        folded = self.source.rollups()
        counts: dict[str, t.Callable[[sa.Connection, Sample], float]] = {
            "events": lambda c, probe: series.event_rows(
                c, table, since=since, until=until, sample=probe
            )
        }
        if folded is None:
            counts["requests"] = lambda c, probe: series.request_rows(
                c, table, since=since, until=until, sample=probe
            )
        samples = self._samples(since, until, **counts)
        sample, events_sample = samples.get("requests"), samples["events"]
        found = self.source.run(
            **(
                folded.calls(table, since=since, until=until)
                if folded is not None
                else {
                    "summary": lambda c: reading.request_summary(
                        c, table, since=since, until=until, sample=sample
                    ),
                    "buckets": lambda c: series.traffic(
                        c, table, since=since, until=until, sample=sample
                    ),
                }
            ),
            counts=lambda c: reading.event_counts(
                c, table, since=since, until=until, sample=events_sample
            ),
        )
        summary, buckets, counts = found["summary"], found["buckets"], found["counts"]
        sort = args.get("sort", "total")
        if sort not in SORTS:
            sort = "total"
        descending = args.get("order", "desc") != "asc"
        attribute = SORTS[sort][1]
        # A missing value (the unmatched route's name) goes last either way.
        routes = sorted(
            (r for r in summary if getattr(r, attribute) is not None),
            key=lambda r: getattr(r, attribute),
            reverse=descending,
        ) + [r for r in summary if getattr(r, attribute) is None]
        requests = sum(r.requests for r in summary)
        errors = sum(r.errors for r in summary)
        return render_template(
            "telemetry_dashboard/overview.html",
            routes=routes[:MAX_ROUTES],
            route_total=len(routes),
            sorts=SORTS,
            sort=sort,
            descending=descending,
            charts=page_charts.traffic(buckets, rollups=folded is not None),
            totals={
                "requests": requests,
                "errors": errors,
                "error_rate": errors / requests if requests else 0.0,
                "routes": len(routes),
            },
            counts=_pivot(counts),
            severities=SEVERITIES,
            estimate=estimate(sample, "requests"),
            counts_estimate=estimate(events_sample, "events"),
            unreadable=summary.unreadable,
            rolled_up=folded is not None,
        )

    def route(self) -> str:
        """One route: histogram, statuses, charts, slowest requests."""
        args = params.current()
        window = parse_window(args, **window_rules(self.telemetry))
        unmatched = args.get("unmatched") == "1"
        name = None if unmatched else args.get("name") or None
        if name is None and not unmatched:
            raise Missing("Which route? This page needs a route name.")
        table = self.source.table()
        bounds: dict[str, t.Any] = {
            "since": window.since,
            "until": window.until,
            "route": name,
            "unmatched": unmatched,
        }
        since, until = window.since, window.until
        sample = self._samples(
            since,
            until,
            rows=lambda c, probe: series.request_rows(c, table, **bounds, sample=probe),
        )["rows"]
        bounds["sample"] = sample
        folded = self.source.rollups()
        calls: dict[str, t.Callable[[sa.Connection], t.Any]] = {
            "buckets": lambda c: series.traffic(c, table, **bounds),
            "histogram": lambda c: series.latency_histogram(c, table, **bounds),
            "statuses": lambda c: series.status_breakdown(c, table, **bounds),
            "slowest": lambda c: series.slowest(c, table, limit=SLOWEST, **bounds),
            # The route's name as a glob matches itself (and maybe more, if
            # it holds * or ?: the exact name is picked below).
            "summary": lambda c: reading.request_summary(
                c, table, since=since, until=until, route=name, sample=sample
            ),
            # The route's request ends, read or not (from the indexes).
            "stored": lambda c: series.request_rows(c, table, **bounds),
            # Its N+1 statement shapes (the SQLAlchemy integration's).
            "n_plus_one": lambda c: (
                []
                if name is None
                else reading.events(
                    c,
                    table,
                    since=since,
                    until=until,
                    event_type=EventType.DB_N_PLUS_ONE.value,
                    route=name,
                    limit=MAX_N_PLUS_ONE_EVENTS,
                )
            ),
        }
        if folded is not None:
            # The figures and the chart from the rollups: exact.
            calls.update(
                folded.calls(
                    table, since=since, until=until, route=name, unmatched=unmatched
                )
            )
            del calls["stored"]
        found = self.source.run(**calls)
        buckets, histogram = found["buckets"], found["histogram"]
        statuses, slowest, summary = (
            found["statuses"],
            found["slowest"],
            found["summary"],
        )
        figures = next((r for r in summary if r.route_name == name), None)
        read = figures.rows if figures is not None else 0
        if folded is not None:
            unreadable = summary.unreadable
        else:
            stored = found["stored"] / sampling.scale(sample)
            unreadable = max(round(stored) - read, 0)
        return render_template(
            "telemetry_dashboard/route.html",
            name=name,
            unmatched=unmatched,
            figures=figures,
            charts=page_charts.traffic(buckets, rollups=folded is not None),
            histogram=page_charts.durations(histogram),
            statuses=statuses,
            status_chart=page_charts.statuses(statuses),
            slowest=slowest,
            n_plus_one=n_plus_one(found["n_plus_one"], name),
            estimate=estimate(sample, "requests"),
            unreadable=unreadable,
            rolled_up=folded is not None,
        )

    def trace(self, request_id: str) -> str:
        """Every event of one request id on a timeline."""
        events = self.source.run(
            events=lambda c: reading.events(
                c, self.source.table(), request_id=request_id, limit=MAX_TRACE_EVENTS
            )
        )["events"]
        if not events:
            raise Missing(f"No event is stored for the request id {request_id!r}.")
        trace = Trace.of(events)
        return render_template(
            "telemetry_dashboard/trace.html",
            request_id=request_id,
            rows=trace.rows,
            first=trace.events[0],
            end=trace.end,
            truncated=len(events) >= MAX_TRACE_EVENTS,
            timeline=charts.timeline(
                trace.spans,
                title="Events in time",
                unit="ms from the start of the request",
            ),
        )

    def events(self) -> str:
        """The events of the window, filtered, paged by id."""
        args = params.current()
        window = parse_window(args, **window_rules(self.telemetry))
        errors: list[str] = []
        filters = args.filters(errors)
        events = self.source.run(
            events=lambda c: reading.events(
                c,
                self.source.table(),
                since=window.since,
                until=window.until,
                limit=PAGE_SIZE,
                **filters,
            )
        )["events"]
        shown = {k: v for k, v in filters.items() if k != "before_id"}
        return render_template(
            "telemetry_dashboard/events.html",
            events=events,
            filters=shown,
            errors=errors,
            next_before=events[-1].id if len(events) == PAGE_SIZE else None,
            paged="before_id" in filters,
            event_types=sorted(
                {e.value for e in EventType} | {filters.get("event_type", "")} - {""}
            ),
            severities=SEVERITIES,
            actor_types=list(params.ACTOR_TYPES),
        )

    def compare(self) -> str:
        """Each route against a baseline: the same window earlier, or
        another release; the routes that got worse first."""
        args = params.current()
        window = parse_window(args, **window_rules(self.telemetry))
        since, until = window.since, window.until
        errors: list[str] = []
        release = _release(args.text("release"), "release", errors)
        other = _release(args.text("baseline_release"), "baseline_release", errors)
        if other is not None and release is None:
            errors.append("A baseline release is compared with a release: give both.")
            other = None
        shift = BASELINES.get(args.text("baseline") or "7d")
        if shift is None:
            errors.append(
                f"Unknown baseline {args.get('baseline', '')[:40]!r}: use "
                f"{', '.join(BASELINES)}."
            )
            shift = BASELINES["7d"]
        table = self.source.table()
        folded = self.source.rollups()

        def summary(**window: t.Any) -> t.Callable[[sa.Connection], t.Any]:
            if folded is not None:
                return lambda c: rollups.summary(
                    c, table, folded.table, retention=folded.retention, **window
                )
            return lambda c: reading.request_summary(c, table, **window)

        before = (
            {"since": since, "until": until, "release": other}
            if other is not None
            else {"since": since - shift, "until": until - shift, "release": release}
        )
        found = self.source.run(
            current=summary(since=since, until=until, release=release),
            baseline=summary(**before),
        )
        changes = comparing.compare(found["current"], found["baseline"])
        return render_template(
            "telemetry_dashboard/compare.html",
            changes=changes[:MAX_ROUTES],
            worse=sum(1 for c in changes if c.worse),
            release=release,
            baseline_release=other,
            baseline=next(k for k, v in BASELINES.items() if v == shift),
            baselines=list(BASELINES),
            before=before,
            errors=errors,
            threshold=comparing.DEFAULT_THRESHOLD,
            inf=float("inf"),
            rolled_up=folded is not None,
        )

    # -- reading ----------------------------------------------------------------

    def _samples(
        self,
        since: dt.datetime,
        until: dt.datetime,
        **counts: t.Callable[[sa.Connection, Sample], float],
    ) -> dict[str, Sample | None]:
        """:meth:`.queries.Source.samples` of about :data:`SAMPLE_ROWS` rows."""
        return self.source.samples(since, until, counts, target=SAMPLE_ROWS)


class Missing(Exception):
    """What a page was asked for does not exist: a 404 page saying so."""


#: The baselines the compare page offers: the same window this long before.
BASELINES: dict[str, dt.timedelta] = {
    "1d": dt.timedelta(days=1),
    "7d": dt.timedelta(days=7),
    "28d": dt.timedelta(days=28),
}


def _release(value: str | None, key: str, errors: list[str]) -> str | None:
    """A release name from the query, or None with the reason in ``errors``."""
    if value is None:
        return None
    if len(value) > comparing.RELEASE_LENGTH or not value.isprintable():
        errors.append(
            f"{key} must be a release name of 1 to {comparing.RELEASE_LENGTH} "
            "printable characters."
        )
        return None
    return value


def window_rules(telemetry: AppState) -> dict[str, t.Any]:
    """:func:`.window.rules` for ``telemetry``'s app: longer windows with
    rollups on."""
    model = telemetry.rollup_model
    days = telemetry.settings.ROLLUP_RETENTION_DAYS[2] if model is not None else None
    return window_rules_for(days)


def _pivot(counts: t.Iterable[t.Any]) -> list[tuple[str, dict[str, int], int]]:
    """(event type, {severity: count}, total) rows, the most frequent first."""
    table: dict[str, dict[str, int]] = {}
    for row in counts:
        by_severity = table.setdefault(row.event_type, {})
        by_severity[row.severity] = by_severity.get(row.severity, 0) + row.count
    rows = [(name, sev, sum(sev.values())) for name, sev in table.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0]))


__all__ = ["Reader"]
