"""Which requests telemetry ignores (``TELEMETRY_EXCLUDE``).

Decisions about an endpoint are made once and cached (endpoints are the
application's finite set); a path prefix check is two C-level string
operations per request.
"""

from __future__ import annotations

import fnmatch
import typing as t


class RouteRules:
    """Route selectors from ``TELEMETRY_EXCLUDE``.

    A selector starting with ``/`` is a path prefix anchored at the start of
    the path and ending at a segment boundary (``/health`` matches
    ``/health`` and ``/health/db``, not ``/healthy``); a trailing ``*``
    drops the boundary (``/health*``). Any other selector is an endpoint
    name, with ``*`` wildcards: ``admin.*`` is the ``admin`` blueprint,
    ``*.static`` every blueprint's static files.
    """

    def __init__(self, exclude: t.Iterable[str] = ()) -> None:
        paths = [s for s in exclude if s.startswith("/")]
        self._endpoints = [s for s in exclude if not s.startswith("/")]
        self._starts = tuple(
            p[:-1] if p.endswith("*") else (p if p.endswith("/") else p + "/")
            for p in paths
        )
        self._exact = frozenset(p.rstrip("/") or "/" for p in paths)
        self._excluded: dict[str | None, bool] = {None: False}

    def exclude_endpoints(self, *selectors: str) -> None:
        """Exclude more endpoints (names with ``*`` wildcards), after setup."""
        self._endpoints.extend(selectors)
        self._excluded = {None: False}

    @property
    def empty(self) -> bool:
        """True when nothing is excluded (the default)."""
        return not self._endpoints and not self._starts

    def excluded(self, endpoint: str | None, path: str) -> bool:
        """Whether telemetry ignores a request to ``endpoint`` at ``path``."""
        hit = self._excluded.get(endpoint)
        if hit is None:
            name = endpoint or ""
            hit = any(fnmatch.fnmatchcase(name, p) for p in self._endpoints)
            self._excluded[endpoint] = hit
        if hit:
            return True
        return bool(self._starts) and (
            path in self._exact or path.startswith(self._starts)
        )
