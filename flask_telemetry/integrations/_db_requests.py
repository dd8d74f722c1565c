"""A request's or a job's statements: a tally opened when it starts and,
when it ends, its figures for the request or job end, its N+1 shapes and
its profile recorded, then the slow statements it ran."""

from __future__ import annotations

import dataclasses
import logging
import random
import typing as t

import sqlalchemy as sa
from flask import current_app, g, has_app_context

from flask_telemetry import EventType, Severity, Telemetry
from flask_telemetry.integrations._db_listeners import PENDING, clock, record_own
from flask_telemetry.integrations._db_time import Tally, current_tally

#: The key of an instrumented app's :class:`Instrumented` in ``app.extensions``.
EXTENSION = "telemetry.sqlalchemy"
logger = logging.getLogger("flask_telemetry")


@dataclasses.dataclass(kw_only=True, eq=False)
class Instrumented:
    """What :func:`.sqlalchemy.instrument` installed on an app, and its
    settings for the tallies."""

    listeners: list[tuple[sa.Engine, str, t.Callable[..., None]]]
    telemetry: Telemetry
    n_plus_one: int
    profile_rate: float
    max_shapes: int
    max_chars: int

    def detach(self) -> None:
        for engine, name, fn in self.listeners:
            if sa.event.contains(engine, name, fn):
                sa.event.remove(engine, name, fn)

    def tally(self, *, profile: bool) -> Tally:
        rate = self.profile_rate
        return Tally(
            started=clock(),
            profile=profile and rate > 0.0 and (rate >= 1.0 or random.random() < rate),
            max_shapes=self.max_shapes,
        )

    def cut(self, text: str, chars: int | None = None) -> str:
        chars = self.max_chars if chars is None else min(chars, self.max_chars)
        return text if len(text) <= chars else text[: chars - 3] + "..."

    def finish(self, tally: Tally, where: dict[str, t.Any]) -> tuple[int, float, bool]:
        """Record ``tally``'s N+1 shapes and profile; return its figures.

        ``where`` is added to each event's metadata (a job's name)."""
        count, seconds = tally.figures()
        repeated = tally.repeated(self.n_plus_one)
        for shape, entry in repeated:
            record_own(
                self.telemetry,
                {
                    **where,
                    "statement": self.cut(shape),
                    "count": entry[0],
                    "total_ms": round(entry[1] * 1000.0, 3),
                    "threshold": self.n_plus_one,
                    "bind_key": entry[3],
                },
                EventType.DB_N_PLUS_ONE,
            )
        if tally.profile:
            metadata = {
                **where,
                "db_count": count,
                "db_ms": round(seconds * 1000.0, 3),
            }
            metadata.update(tally.profile_metadata(self.cut, self._max_bytes()))
            record_own(
                self.telemetry, metadata, EventType.DB_QUERY_PROFILE, Severity.INFO
            )
        return count, seconds * 1000.0, bool(repeated)

    def _max_bytes(self) -> int:
        try:
            return int(self.telemetry.settings.METADATA_MAX_BYTES) - 512
        except Exception:
            return 8192 - 512


def begin_request() -> None:
    """Before a request: open its tally."""
    try:
        state = current_app.extensions.get(EXTENSION)
        current_tally.set(None if state is None else state.tally(profile=True))
    except Exception:
        logger.exception("Telemetry could not count a request's statements")


def record_pending(exc: BaseException | None = None) -> None:
    """Teardown of a request: its figures on the request end, its N+1
    shapes, its profile and its slow statements."""
    try:
        tally = current_tally.get()
        if tally is not None:
            current_tally.set(None)
            state = current_app.extensions.get(EXTENSION)
            # The request's RequestContext; None for a request telemetry
            # does not record (excluded).
            ctx = g.__dict__.get("_telemetry")
            if state is not None and ctx is not None:
                ctx.db = state.finish(tally, {})
    except Exception:
        logger.exception("Telemetry could not count a request's statements")
    try:
        pending = g.pop(PENDING, None)
        for telemetry, metadata in pending or ():
            record_own(telemetry, metadata)
    except Exception:
        logger.exception("Telemetry could not record a slow query")


def job_tally() -> Tally | None:
    """A tally for a job starting now, when the current app (an app context
    is needed) is instrumented; None otherwise."""
    try:
        if not has_app_context():
            return None
        state: Instrumented | None = current_app.extensions.get(EXTENSION)
        if state is None:
            return None
        tally = state.tally(profile=False)
        current_tally.set(tally)
        return tally
    except Exception:
        logger.exception("Telemetry could not count a job's statements")
        return None


def job_figures(tally: Tally, job: str | None) -> dict[str, t.Any]:
    """End a job's ``tally`` (opened by :func:`job_tally`): record its N+1
    shapes and return ``db_count`` and ``db_ms`` for its ``worker_job_end``."""
    try:
        state = current_app.extensions.get(EXTENSION) if has_app_context() else None
        if state is None:
            return {}
        count, ms, _ = state.finish(tally, {} if job is None else {"job": job})
        return {"db_count": count, "db_ms": round(ms, 3)}
    except Exception:
        logger.exception("Telemetry could not count a job's statements")
        return {}
