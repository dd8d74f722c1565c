"""The end of an HTTP request as the domain records it, and the policy on it.

The HTTP layer gathers the facts (:class:`RequestEnd`); the domain decides
what they mean (:class:`RequestEndPolicy`): severity, the slow flag, whether
sampling keeps the row, and the actor when the loader names none.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import typing as t

from ..storage.vocabulary import ActorType
from .sampling import Sampler

#: The actor of a request whose actor loader names nobody.
ANONYMOUS: tuple[ActorType, None] = (ActorType.ANONYMOUS, None)
#: The actor of work outside any request: CLI commands, workers, threads.
SYSTEM: tuple[ActorType, None] = (ActorType.SYSTEM, None)


def actor_of(
    loaded: tuple[t.Any, t.Any] | None, *, in_request: bool
) -> tuple[t.Any, t.Any]:
    """Who acted: what the actor loader returned, else anonymous in a
    request and the system outside one."""
    if loaded is not None:
        return loaded
    return ANONYMOUS if in_request else SYSTEM


#: ``(count, milliseconds, repeated)``: the statements a request ran on the
#: application's engines, their time, and whether one shape of them repeated
#: past the N+1 threshold (set by the SQLAlchemy integration).
DbFigures: t.TypeAlias = tuple[int, float, bool]


@dataclasses.dataclass(kw_only=True, slots=True)
class RequestEnd:
    """What ``http_request_end`` is made of, gathered by the request hooks.

    Every value here was produced or checked by flask_telemetry itself, so
    :meth:`~flask_telemetry.domain.recorder.Recorder.record_request_end`
    does not check it again.

    ``ended_at`` is the wall clock (seconds since the epoch) when the
    request ended; ``duration_ms`` is measured on a monotonic clock.
    """

    request_id: str
    route_name: str | None
    ip_address: str | None
    user_agent: str | None
    method: str
    trace_id: str | None = None
    parent_id: str | None = None
    status_code: int | None = None
    #: The class name of an exception that ended the request, cleaned.
    exception: str | None = None
    duration_ms: float = 0.0
    ended_at: float = 0.0
    severity: str = "info"
    slow: bool = False
    #: Set when sampling is on: 1.0 for a request always kept, else the rate.
    sample_rate: float | None = None
    #: Set by the SQLAlchemy integration: see :data:`DbFigures`.
    db: DbFigures | None = None

    @property
    def status(self) -> int:
        """The response's status; 500 for a request that ended without one."""
        return 500 if self.status_code is None else self.status_code


class RequestEndPolicy:
    """Decides severity, slowness and sampling of a finished request.

    A request that raised is ``error``; one slower than its endpoint's
    threshold (``slow_ms``, or the first matching pattern of
    ``slow_ms_by_endpoint``) is ``warning`` and ``slow``. Those, and
    responses with a status of ``keep_status`` or more, are always kept; a
    routine request is kept at the ``sampler``'s rate (unless it repeated a
    statement past the N+1 threshold: kept too), and when that is
    below 1 the row's metadata says ``sample_rate``.
    """

    def __init__(
        self,
        *,
        slow_ms: float,
        slow_ms_by_endpoint: t.Mapping[str, float] | None = None,
        sampler: Sampler | None = None,
        keep_status: int = 400,
    ) -> None:
        self.slow_ms = slow_ms
        self._slow_rules = dict(slow_ms_by_endpoint or {})
        self._slow: dict[str | None, float] = {None: slow_ms}
        self.sampler = Sampler(1.0) if sampler is None else sampler
        self.keep_status = keep_status

    def slow_threshold(self, endpoint: str | None) -> float:
        """The slow-request threshold in milliseconds for ``endpoint``."""
        ms = self._slow.get(endpoint)
        if ms is None:
            assert endpoint is not None
            ms = self._slow_rules.get(endpoint)
            if ms is None:
                ms = next(
                    (
                        v
                        for p, v in self._slow_rules.items()
                        if fnmatch.fnmatchcase(endpoint, p)
                    ),
                    self.slow_ms,
                )
            self._slow[endpoint] = ms
        return ms

    def decide(self, end: RequestEnd) -> bool:
        """Set ``severity``, ``slow`` and ``sample_rate`` on ``end``; return
        whether to keep it (False: sampled out)."""
        keep = True
        threshold = self._slow.get(end.route_name)  # slow_threshold(), cached
        if end.exception is not None:
            end.severity = "error"
        elif end.duration_ms > (
            self.slow_threshold(end.route_name) if threshold is None else threshold
        ):
            end.severity = "warning"
            end.slow = True
        else:
            status = end.status_code  # end.status, without the property call
            keep = (500 if status is None else status) >= self.keep_status
        sampler = self.sampler
        if sampler.rate < 1.0:
            db = end.db
            if keep or (db is not None and db[2]):
                end.sample_rate = 1.0
            elif sampler.keep(end.trace_id):
                end.sample_rate = sampler.rate
            else:
                return False
        return True
