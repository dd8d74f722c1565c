"""What the read side returns: frozen records, field names as in the table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

#: How requests that matched no route (``route_name`` NULL) are labelled,
#: on the dashboard's pages and in the CLI alike.
UNMATCHED = "(unmatched)"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class EventRecord:
    """One stored event of ``telemetry_traces``, read back.

    ``occurred_at`` is an aware UTC datetime on every database; ``metadata``
    is a dict (empty when the row has none).
    """

    id: int
    occurred_at: dt.datetime
    event_type: str
    severity: str
    actor_type: str
    actor_id: int | None
    request_id: str | None
    route_name: str | None
    ip_address: str | None
    user_agent: str | None
    metadata: dict[str, t.Any]

    def as_dict(self) -> dict[str, t.Any]:
        """The fields as a JSON-ready dict (``occurred_at`` in ISO 8601)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["occurred_at"] = self.occurred_at.isoformat()
        return data


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RouteSummary:
    """The requests of one endpoint in a time window, from ``http_request_end``.

    ``route_name`` is None for requests that matched no route. Counts and
    figures stand for the requests a sampled row represents (1/sample_rate
    each); see :func:`~flask_telemetry.reading.request_summary`.
    """

    route_name: str | None
    #: Requests, sampled rows counted 1/sample_rate times, rounded.
    requests: int
    #: Requests with status >= 500 or an exception.
    errors: int
    #: Requests with a 4xx status and no exception.
    client_errors: int
    #: errors / requests (0.0 to 1.0).
    error_rate: float
    #: Requests marked slow by the request hooks.
    slow: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    #: Rows stored for this route (sampled rows counted once).
    rows: int
    #: Requests whose end carries database figures (the SQLAlchemy
    #: integration was on); the database figures below are theirs only, None
    #: when there are none.
    db_requests: int = 0
    #: Statements per request, on average.
    mean_db_count: float | None = None
    #: Milliseconds in the database per request, on average and at p95.
    mean_db_ms: float | None = None
    p95_db_ms: float | None = None
    #: The share of those requests' time spent in the database (0.0 to 1.0).
    db_share: float | None = None

    @property
    def total_ms(self) -> float:
        """Time spent in this route: requests x mean (the sort key)."""
        return self.requests * self.mean_ms

    def as_dict(self) -> dict[str, t.Any]:
        """The fields as a JSON-ready dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class Summaries(list[RouteSummary]):
    """The list :func:`~flask_telemetry.reading.request_summary` returns: one
    :class:`RouteSummary` per route, and how many rows were left out.

    ``unreadable`` counts the ``http_request_end`` rows of the window (of
    the sample, when one is read) whose figures cannot be read: metadata
    that is no JSON object, a ``status`` that is no integer from 100 to 999,
    a ``duration_ms`` that is no number from 0 to 10^12. Written by anything
    but the request hooks; they are in no figure of the list.
    """

    unreadable: int = 0

    def __init__(self, routes: t.Iterable[RouteSummary] = (), unreadable: int = 0):
        super().__init__(routes)
        self.unreadable = unreadable


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class EventCount:
    """How many events of one type and severity a time window holds."""

    event_type: str
    severity: str
    count: int

    def as_dict(self) -> dict[str, t.Any]:
        """The fields as a JSON-ready dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PruneResult:
    """What :func:`~flask_telemetry.reading.prune` did (or would do)."""

    #: Rows deleted (with ``dry_run``: rows that would be deleted), including
    #: the rows of dropped partitions.
    deleted: int
    #: DELETE transactions run (0 with ``dry_run``).
    batches: int
    #: Wall time taken.
    seconds: float
    #: Rows with ``occurred_at`` before this aware UTC time are expired.
    cutoff: dt.datetime
    #: PostgreSQL partitions dropped whole (would be, with ``dry_run``).
    partitions_dropped: int = 0
    #: Their names.
    partition_names: tuple[str, ...] = ()
    #: Expired rows left because ``max_seconds`` ran out (0 when done).
    remaining: int = 0
    dry_run: bool = False

    @property
    def complete(self) -> bool:
        """True when no expired row is left."""
        return self.remaining == 0

    def as_dict(self) -> dict[str, t.Any]:
        """The fields as a JSON-ready dict (``cutoff`` in ISO 8601)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["cutoff"] = self.cutoff.isoformat()
        data["partition_names"] = list(self.partition_names)
        return data
