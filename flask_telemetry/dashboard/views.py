"""The pages: each reads a bounded slice of the window and renders it."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import time
import typing as t

import sqlalchemy as sa
from flask import render_template

from .. import reading
from ..reading import Sample, _dialects, rollups, series
from ..reading import compare as comparing
from ..reading import sample as sampling
from ..storage.vocabulary import EventType
from . import budget, charts, params
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
#: Statements of a query profile drawn on a trace's timeline.
MAX_PROFILE_SPANS = 100
#: Rows a page's figures are read from, about, unless ``exact=1`` is asked
#: for: a window with more than twice as many is read through a
#: :class:`Sample` of about this many (each JSON metadata parsed costs about
#: 3 µs on SQLite).
SAMPLE_ROWS = 8_000

#: Queries of one page run at the same time, each on its own connection.
CONCURRENT_QUERIES = 5
_SHARED_POOLS = (sa.pool.StaticPool, sa.pool.SingletonThreadPool)

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

    # -- pages ----------------------------------------------------------------

    def overview(self) -> str:
        """The overview: traffic charts, the route table, event counts."""
        args = params.current()
        window = parse_window(args, **window_rules(self.telemetry))
        since, until = window.since, window.until
        table = self._table()
        folded = self._rollups()
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
        found = self._run(
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
            charts=_traffic_charts(buckets),
            totals={
                "requests": requests,
                "errors": errors,
                "error_rate": errors / requests if requests else 0.0,
                "routes": len(routes),
            },
            counts=_pivot(counts),
            severities=SEVERITIES,
            estimate=_estimate(sample, "requests"),
            counts_estimate=_estimate(events_sample, "events"),
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
        table = self._table()
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
        folded = self._rollups()
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
        found = self._run(**calls)
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
            charts=_traffic_charts(buckets),
            histogram=charts.bar_chart(
                [
                    charts.Bar(
                        label=_ms(b.low_ms),
                        value=b.requests,
                        hint=f"{_ms(b.low_ms)}-{_ms(b.high_ms)} ms: {b.requests}",
                    )
                    for b in histogram
                ],
                title="Requests by duration",
                unit="requests",
                x_unit="duration in ms (log bins: from each label to the next)",
                integer=True,
            )
            if histogram
            else None,
            statuses=statuses,
            status_chart=charts.bar_chart(
                [
                    charts.Bar(
                        label=str(s.status),
                        value=s.requests,
                        css=f"bar status{s.status // 100}",
                    )
                    for s in sorted(statuses, key=lambda s: s.status)
                ],
                title="Requests by status",
                unit="requests",
                x_unit="HTTP status",
                integer=True,
            )
            if statuses
            else None,
            slowest=slowest,
            n_plus_one=_n_plus_one(found["n_plus_one"], name),
            estimate=_estimate(sample, "requests"),
            unreadable=unreadable,
            rolled_up=folded is not None,
        )

    def trace(self, request_id: str) -> str:
        """Every event of one request id on a timeline."""
        events = self._run(
            events=lambda c: reading.events(
                c, self._table(), request_id=request_id, limit=MAX_TRACE_EVENTS
            )
        )["events"]
        if not events:
            raise Missing(f"No event is stored for the request id {request_id!r}.")
        events = sorted(events, key=lambda e: (e.occurred_at, e.id))
        # Offsets from the start of the request: the first event, or the
        # end of the request less its duration when that is earlier.
        first = min(
            e.occurred_at - dt.timedelta(milliseconds=_duration(e)) for e in events
        )
        spans = []
        rows = []
        for event in events:
            offset = (event.occurred_at - first).total_seconds() * 1000.0
            duration = _duration(event)
            start, length = offset - duration, duration
            spans.append(
                charts.Span(
                    label=event.event_type,
                    start_ms=start,
                    length_ms=length,
                    css=f"span sev-{event.severity}",
                    hint=f"{event.event_type} ({event.severity}) at +{offset:.3f} ms"
                    + (f", {duration:.3f} ms" if length else ""),
                )
            )
            rows.append(
                {
                    "event": event,
                    "offset_ms": offset,
                    "metadata": pretty(event.metadata),
                }
            )
        end = next(
            (e for e in events if e.event_type == EventType.HTTP_REQUEST_END.value),
            None,
        )
        # A query profile's statements, from the start of the request.
        started = 0.0
        if end is not None:
            started = (end.occurred_at - first).total_seconds() * 1000.0
            started -= _duration(end)
        for event in events:
            if event.event_type == EventType.DB_QUERY_PROFILE.value:
                spans.extend(_profile_spans(event.metadata, started))
        return render_template(
            "telemetry_dashboard/trace.html",
            request_id=request_id,
            rows=rows,
            first=events[0],
            end=end,
            truncated=len(events) >= MAX_TRACE_EVENTS,
            timeline=charts.timeline(
                spans,
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
        events = self._run(
            events=lambda c: reading.events(
                c,
                self._table(),
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

    # -- reading ----------------------------------------------------------------

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
        table = self._table()
        folded = self._rollups()

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
        found = self._run(
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

    def _rollups(self) -> _Rollups | None:
        """The rollups to read the figures and charts from, when they are on."""
        model = self.telemetry.rollup_model
        if model is None:
            return None
        minutes, hours, days = self.telemetry.settings.ROLLUP_RETENTION_DAYS
        return _Rollups(
            model.__table__,
            rollups.Retention(minutes=minutes, hours=hours, days=days),
        )

    def _table(self) -> sa.Table:
        table: sa.Table = self.telemetry.model.__table__
        return table

    def _engine(self) -> sa.Engine:
        return self.telemetry.engine()

    def _samples(
        self,
        since: dt.datetime,
        until: dt.datetime,
        **counts: t.Callable[[sa.Connection, Sample], float],
    ) -> dict[str, Sample | None]:
        """For each of ``counts`` (rows of the window, estimated through the
        sample it is given), the :class:`Sample` to read instead of the
        window, or None to read every row; None for all with ``exact=1``."""
        if _exact():
            return dict.fromkeys(counts)
        probe = sampling.probe(since, until)
        rows = self._run(
            **{
                key: lambda c, count=count: count(c, probe)
                for key, count in counts.items()
            }
        )
        return {
            key: Sample.of(since, until, rows=found, target=SAMPLE_ROWS)
            for key, found in rows.items()
        }

    def _run(self, **calls: t.Callable[[sa.Connection], t.Any]) -> dict[str, t.Any]:
        """Each call's result, each run on a connection of its own; the calls
        of one request share :data:`.budget.PAGE_SECONDS`.

        The queries of a page run at the same time, up to
        :data:`CONCURRENT_QUERIES` at once, so that a page takes about as long
        as its slowest query. Not on an engine whose pool shares one
        connection (an in-memory SQLite database): there one after the other.
        """
        engine = self._engine()
        deadline = budget.deadline()

        def run(call: t.Callable[[sa.Connection], t.Any]) -> t.Any:
            with (
                engine.connect() as conn,
                budget.limited(conn, deadline - time.monotonic()),
            ):
                return call(conn)

        if len(calls) == 1 or isinstance(engine.pool, _SHARED_POOLS):
            return {key: run(call) for key, call in calls.items()}
        workers = min(len(calls), CONCURRENT_QUERIES)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {key: pool.submit(run, call) for key, call in calls.items()}
            return {key: future.result() for key, future in futures.items()}


class Missing(Exception):
    """What a page was asked for does not exist: a 404 page saying so."""


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    """How a page's figures were read: ``percent`` % of the window's time,
    in ``slices`` slices, counting ``noun``."""

    percent: float
    slices: int
    noun: str


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


@dataclasses.dataclass(frozen=True, slots=True)
class _Rollups:
    """``telemetry_rollups`` and how long its buckets are kept."""

    table: sa.Table
    retention: rollups.Retention

    def calls(
        self, traces: sa.Table, **window: t.Any
    ) -> dict[str, t.Callable[[sa.Connection], t.Any]]:
        """The page's ``summary`` and ``buckets`` read from the rollups."""
        bounds = {
            "since": window["since"],
            "until": window["until"],
            "route": window.get("route"),
            "unmatched": window.get("unmatched", False),
            "retention": self.retention,
        }
        return {
            "summary": lambda c: rollups.summary(c, traces, self.table, **bounds),
            "buckets": lambda c: rollups.traffic(c, traces, self.table, **bounds),
        }


def _estimate(sample: Sample | None, noun: str) -> Estimate | None:
    if sample is None:
        return None
    return Estimate(sample.fraction * 100, sampling.SLICES, noun)


def _exact() -> bool:
    """Whether the page was asked for figures from every row (``exact=1``)."""
    return params.current().get("exact") == "1"


def _traffic_charts(buckets: list[series.Bucket]) -> list[t.Any]:
    times = [b.start for b in buckets]
    return [
        charts.line_chart(
            times,
            [
                charts.Line(
                    label="requests", css="s1", values=[b.per_minute for b in buckets]
                )
            ],
            title="Requests per minute",
            unit="req/min",
        ),
        charts.line_chart(
            times,
            [
                charts.Line(
                    label="errors",
                    css="s3",
                    values=[
                        b.error_rate * 100 if b.requests else None for b in buckets
                    ],
                )
            ],
            title="Error rate (status ≥ 500 or an exception)",
            unit="%",
        ),
        charts.line_chart(
            times,
            [
                charts.Line(label="p50", css="s1", values=[b.p50_ms for b in buckets]),
                charts.Line(label="p95", css="s2", values=[b.p95_ms for b in buckets]),
                charts.Line(label="p99", css="s3", values=[b.p99_ms for b in buckets]),
            ],
            title="Latency percentiles (log scale, within about 2.5%)",
            unit="ms",
            log=True,
        ),
    ]


def _pivot(counts: t.Iterable[t.Any]) -> list[tuple[str, dict[str, int], int]]:
    """(event type, {severity: count}, total) rows, the most frequent first."""
    table: dict[str, dict[str, int]] = {}
    for row in counts:
        by_severity = table.setdefault(row.event_type, {})
        by_severity[row.severity] = by_severity.get(row.severity, 0) + row.count
    rows = [(name, sev, sum(sev.values())) for name, sev in table.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0]))


def pretty(metadata: t.Any) -> str:
    """Metadata as indented JSON text (escaped by the template)."""
    return json.dumps(
        metadata, indent=2, sort_keys=True, ensure_ascii=False, default=str
    )


def end_columns(event: t.Any) -> tuple[str, str]:
    """The status and the duration (ms) of an ``http_request_end`` as the
    events lists show them, read as the read API reads them (see
    :func:`~flask_telemetry.reading._dialects.read_fact`); empty texts for other events
    and unreadable values."""
    if event.event_type != EventType.HTTP_REQUEST_END.value:
        return "", ""
    status = _dialects.read_fact(event.metadata, "status")
    duration = _dialects.read_fact(event.metadata, "duration_ms")
    return (
        "" if status is None else str(status),
        "" if duration is None else f"{duration:,.1f}",
    )


def _n_plus_one(events: t.Sequence[t.Any], name: str | None) -> list[dict[str, t.Any]]:
    """The route's N+1 shapes from its ``db_n_plus_one`` events (the newest
    :data:`MAX_N_PLUS_ONE_EVENTS`): requests each was seen in, the most
    runs in one request and the total time, most requests first."""
    shapes: dict[str, dict[str, t.Any]] = {}
    for event in events:
        metadata = event.metadata if isinstance(event.metadata, dict) else {}
        statement = metadata.get("statement")
        if event.route_name != name or not isinstance(statement, str):
            continue
        count = _number(metadata.get("count"))
        found = shapes.setdefault(
            statement,
            {"statement": statement, "requests": 0, "max_count": 0, "total_ms": 0.0},
        )
        found["requests"] += 1
        found["max_count"] = max(found["max_count"], int(count))
        found["total_ms"] += _number(metadata.get("total_ms"))
    return sorted(shapes.values(), key=lambda s: (-s["requests"], -s["max_count"]))


def _number(value: object) -> float:
    """A stored number, or 0 for anything else (a row written by anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    number = float(value)
    return number if 0.0 <= number <= 1e12 else 0.0


def _profile_spans(metadata: object, started: float) -> list[charts.Span]:
    """The statements of a ``db_query_profile`` as timeline spans from
    ``started`` (ms), the first :data:`MAX_PROFILE_SPANS`; anything
    unreadable is left out."""
    if not isinstance(metadata, dict):
        return []
    shapes = metadata.get("shapes")
    statements = metadata.get("statements")
    if not isinstance(shapes, list) or not isinstance(statements, list):
        return []
    spans = []
    for item in statements[:MAX_PROFILE_SPANS]:
        if not (isinstance(item, list) and len(item) == 3):
            continue
        index, start, length = item
        if isinstance(index, bool) or not isinstance(index, int):
            continue
        if not 0 <= index < len(shapes) or not isinstance(shapes[index], str):
            continue
        shape = shapes[index]
        spans.append(
            charts.Span(
                label=f"sql: {shape}",
                start_ms=started + _number(start),
                length_ms=_number(length),
                css="span db",
                hint=f"{shape} ({_number(length):.3f} ms)",
            )
        )
    return spans


def _duration(event: t.Any) -> float:
    """The duration of an ``http_request_end`` in ms, read as the read API
    reads it; 0 for other events and unreadable values."""
    if event.event_type != EventType.HTTP_REQUEST_END.value:
        return 0.0
    duration = _dialects.read_fact(event.metadata, "duration_ms")
    return 0.0 if duration is None else t.cast(float, duration)


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


__all__ = ["Reader"]
