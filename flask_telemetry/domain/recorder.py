"""The domain recorder: checks intent, maps it to a row, hands it to delivery."""

from __future__ import annotations

import enum
import time
import typing as t

from ..exceptions import TelemetryError, TelemetryStorageException
from ..storage import row
from ..storage.vocabulary import ActorType, EventType, Severity
from .delivery.protocol import Delivery
from .delivery.stats import Stats
from .log import RateLimitedLog
from .mapping import Pending, packer
from .privacy import Privacy, clean_text, is_mapping
from .request_end import ANONYMOUS, RequestEnd

_wall = time.time
_REQUEST_ID = row.length("request_id")
_ROUTE_NAME = row.length("route_name")
_IP_ADDRESS = row.length("ip_address")
_USER_AGENT = row.length("user_agent")
#: The :data:`.mapping.Pending` tuple of the values the recorder checks, in
#: this order (any other column is None).
_pack = packer(
    "actor_type",
    "actor_id",
    "event_type",
    "severity",
    "request_id",
    "route_name",
    "ip_address",
    "user_agent",
    "metadata",
    "occurred_at",
)


def _cut(value: str | None, size: int) -> str | None:
    """``value`` cleaned and cut to its column before it is queued, when it
    is too long: a queued event never holds more than its row can store.
    (Values that fit are cleaned on the writer thread.)"""
    if value is None or type(value) is not str or len(value) <= size:
        return value
    return clean_text(value[: 4 * size], size)


def _lookup(values: t.Iterable[str]) -> dict[str, str]:
    # A str Enum member hashes and compares like its value, so one dict
    # resolves both ``EventType.CACHE_HIT`` and ``"cache_hit"`` to the str.
    return {v: v for v in values}


class Recorder:
    """Best-effort recording: never raises for storage, drops bad arguments.

    A bad argument (unknown event type, severity or actor type, an actor id
    that is not an int, metadata that is not a JSON object) is counted as
    ``invalid`` and logged, or raised as :class:`TelemetryError` when
    ``strict``. Storage failures are counted and logged by the delivery and
    swallowed here as a last resort.

    Metadata is cleaned here, before the event is queued, by ``privacy``:
    redacted, size-limited, copied deeply into plain JSON values.
    """

    def __init__(
        self,
        delivery: Delivery,
        stats: Stats,
        log: RateLimitedLog,
        *,
        event_types: t.Iterable[str] = (),
        strict: bool = False,
        privacy: Privacy | None = None,
        release: str | None = None,
    ) -> None:
        self.delivery = delivery
        #: Kept on every ``http_request_end`` (``TELEMETRY_RELEASE``).
        self.release = release
        self.stats = stats
        self.log = log
        self.strict = strict
        self.privacy = Privacy() if privacy is None else privacy
        #: The client address is stored as given (``ip_mode`` "full").
        self._ip_as_is = self.privacy.ip_mode == "full"
        self._event_types = _lookup([e.value for e in EventType] + list(event_types))
        #: Every event type value this recorder accepts, the app's own included.
        self.event_types: frozenset[str] = frozenset(self._event_types)
        self._severities = _lookup(s.value for s in Severity)
        self._actor_types = _lookup(a.value for a in ActorType)

    def record_values(
        self,
        event_type: object,
        severity: object,
        actor_type: object,
        actor_id: object,
        metadata: t.Mapping[t.Any, t.Any] | None,
        request_id: str | None = None,
        route_name: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Record one event; returns once it is stored (sync) or queued
        (async). Plain arguments rather than one object: the request hooks
        call this on every ``telemetry.record()``, where building a frozen
        dataclass (one ``object.__setattr__`` per field) was a sizeable
        share of the call."""
        try:
            queued = self._check(
                event_type,
                severity,
                actor_type,
                actor_id,
                metadata,
                request_id,
                route_name,
                ip_address,
                user_agent,
            )
        except Exception as exc:  # hostile arguments included: never raise
            self.reject(exc)
            return
        self._deliver(queued)

    def record_request_end(self, end: RequestEnd, actor: tuple[t.Any, t.Any]) -> None:
        """Record ``http_request_end`` from the facts the request hooks gathered.

        Those facts were produced by flask_telemetry itself and are not
        checked again; ``actor`` (see :func:`.request_end.actor_of`) is checked
        like a ``record()`` argument, since an actor loader returned it.

        This runs once per request, so the :data:`.mapping.EndFacts` are
        built here in place (the same values, in the same order, as
        :func:`.mapping.request_end_facts` builds them;
        ``tests/http/test_request_context.py`` compares them) and the text is only
        cut when it is too long.
        """
        try:
            if actor is ANONYMOUS:  # no actor loader, or it named nobody
                actor_type: str = "anonymous"
                actor_id = None
            else:
                actor_type = self._actor_type(actor[0])
                actor_id = _actor_id(actor[1])
            route_name, ip_address, user_agent = self._where(
                end.route_name, end.ip_address, end.user_agent
            )
            status = end.status_code
            db = end.db
            queued = _pack(
                actor_type,
                actor_id,
                "http_request_end",
                end.severity,
                # Resolved by the hooks: a header's id only when it fits.
                end.request_id,
                route_name,
                ip_address,
                user_agent,
                (
                    end.method,
                    500 if status is None else status,
                    end.duration_ms,
                    end.exception,
                    end.slow,
                    end.sample_rate,
                    end.trace_id,
                    end.parent_id,
                    self.release,
                    None if db is None else db[0],
                    None if db is None else db[1],
                ),
                end.ended_at,
            )
        except Exception as exc:  # a hostile actor loader: count, never raise
            self.reject(exc)
            return
        self._deliver(queued)

    def _deliver(self, queued: Pending) -> None:
        """Count ``queued`` as accepted and hand it to the delivery."""
        self.stats.accept()
        try:
            self.delivery.deliver(queued)
        except Exception as exc:
            self._failed(exc)

    def _where(
        self, route_name: str | None, ip_address: str | None, user_agent: str | None
    ) -> tuple[str | None, str | None, str | None]:
        """Where an event comes from, as stored: the address as the privacy
        settings keep it, each text cut to its column (only when too long)."""
        if type(route_name) is str and len(route_name) > _ROUTE_NAME:
            route_name = _cut(route_name, _ROUTE_NAME)
        if self._ip_as_is:
            if type(ip_address) is str and len(ip_address) > _IP_ADDRESS:
                ip_address = _cut(ip_address, _IP_ADDRESS)
        else:
            ip_address = _cut(self.privacy.ip(ip_address), _IP_ADDRESS)
        if type(user_agent) is str and len(user_agent) > _USER_AGENT:
            user_agent = _cut(user_agent, _USER_AGENT)
        return route_name, ip_address, user_agent

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, TelemetryStorageException):
            self.stats.drop("storage_error")
            self.log.error("db", "Telemetry storage failed: %s", exc)
        else:  # the best-effort promise covers our own bugs
            self.stats.drop("storage_error")
            self.log.error("bug", "Telemetry delivery failed: %r", exc, exc=True)

    def reject(self, exc: Exception) -> None:
        """Count and log an event whose arguments were bad (raise when strict)."""
        self.stats.accept()
        self.stats.drop("invalid")
        if self.strict:
            if isinstance(exc, TelemetryError):
                raise exc
            raise TelemetryError(f"Bad telemetry event: {_text(exc)}") from exc
        self.log.error("invalid", "Dropped telemetry event: %s", _text(exc))

    def skip(self, reason: str) -> None:
        """Count an event left out on purpose (``sampled_out``) as accepted
        and dropped, so that ``accepted == written + dropped`` still holds."""
        self.stats.accept()
        self.stats.drop(reason)

    def _actor_type(self, value: object) -> str:
        actor_type = _resolve(self._actor_types, value)
        if actor_type is None:
            raise TelemetryError(f"Unknown actor type {_shown(value)}.")
        return actor_type

    def _check(
        self,
        event_type: object,
        severity: object,
        actor_type: object,
        actor_id: object,
        metadata: t.Mapping[t.Any, t.Any] | None,
        request_id: str | None,
        route_name: str | None,
        ip_address: str | None,
        user_agent: str | None,
    ) -> Pending:
        """The :data:`.mapping.Pending` tuple of an event, its values checked.

        It is made by a packer from the columns' declaration (the values
        :func:`.mapping.pending` would make; ``tests/http/test_request_context.py``
        compares them); the text is only cut when it is too long.
        """
        try:  # the common case: three lookups, no call
            event = self._event_types.get(event_type)  # type: ignore[call-overload]
            level = self._severities.get(severity)  # type: ignore[call-overload]
            actor = self._actor_types.get(actor_type)  # type: ignore[call-overload]
        except TypeError:  # unhashable: not a known value
            event = _resolve(self._event_types, event_type)
            level = _resolve(self._severities, severity)
            actor = _resolve(self._actor_types, actor_type)
        if event is None:
            raise TelemetryError(
                f"Unknown event type {_shown(event_type)}. Use an EventType, "
                "or register your own str Enum of event types with "
                "Telemetry(event_types=[MyEvents])."
            )
        if level is None:
            raise TelemetryError(
                f"Unknown severity {_shown(severity)}; "
                f"use one of {sorted(self._severities)}."
            )
        if actor is None:
            raise TelemetryError(f"Unknown actor type {_shown(actor_type)}.")
        if metadata is not None:
            if type(metadata) is not dict and not is_mapping(metadata):
                raise TelemetryError(
                    f"metadata must be a mapping, not {type(metadata).__name__}."
                )
            stored: dict[str, t.Any] | row.JsonText | None = self.privacy.stored(
                metadata
            )
        else:
            stored = None
        if actor_id is not None:
            actor_id = _actor_id(actor_id)
        if type(request_id) is str and len(request_id) > _REQUEST_ID:
            request_id = _cut(request_id, _REQUEST_ID)
        route_name, ip_address, user_agent = self._where(
            route_name, ip_address, user_agent
        )
        return _pack(
            actor,
            actor_id,
            event,
            level,
            request_id,
            route_name,
            ip_address,
            user_agent,
            stored,
            _wall(),
        )


def _resolve(table: dict[str, str], value: object) -> str | None:
    try:
        return table.get(value)  # type: ignore[call-overload, no-any-return]
    except TypeError:  # unhashable
        return None


def _actor_id(actor_id: object) -> int | None:
    if actor_id is None:
        return None
    if type(actor_id) is not int:
        raise TelemetryError(f"actor_id must be an int, not {type(actor_id).__name__}.")
    if not -(2**63) <= actor_id < 2**63:
        raise TelemetryError("actor_id does not fit in a BIGINT column.")
    return actor_id


def _shown(value: object) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)[:80]


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:300]
    except Exception:  # a hostile __str__
        return type(exc).__name__
