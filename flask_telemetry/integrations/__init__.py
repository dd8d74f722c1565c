"""Opt-in integrations that record the event vocabulary by themselves.

One module per library, imported only when enabled; each library is an
optional extra of this package. Every integration records through
:meth:`Telemetry.record <flask_telemetry.Telemetry.record>`, so validation,
privacy, sampling and accounting apply, and never raises into the code it
observes.

One interface
-------------

Every integration module has the same three functions and one options
class::

    instrument(target, telemetry, **options) -> target
    uninstrument(target) -> None
    is_instrumented(target) -> bool
    Options  # a frozen dataclass: every option, its default and its check

``target`` is what the integration changes: the Flask app (``sqlalchemy``,
``exceptions``, ``flask_limiter``), the ``requests.Session`` or
``httpx.Client``, the Celery app, or ``None`` for RQ, which has no
application object (its enqueue side is one patch of ``rq.job.Job`` for the
whole process). :data:`INTEGRATIONS` lists them with their extras.

- **Enable, disable, ask**: ``instrument`` enables and returns its target (so
  ``session = instrument(requests.Session(), telemetry)`` is one line),
  ``uninstrument`` undoes everything it did, ``is_instrumented`` says whether
  it is in force.
- **Idempotent**: calling ``instrument`` again on an instrumented target
  applies the new options and the current configuration, and installs
  nothing twice; ``uninstrument`` on a target that is not instrumented does
  nothing.
- **Missing library**: :class:`DidNotEnable`, naming the extra to install,
  from :func:`load` or from ``instrument``, never an ``ImportError`` later
  in a hook.
- **Options in one place**: each module's ``Options`` declares its options
  (defaults, checks, documentation); ``instrument``'s keywords are exactly
  its fields, checked when ``instrument`` is called. A setting that is also
  a core ``TELEMETRY_*`` key (the slow query threshold) defaults to that
  key, read from the app's config when ``instrument`` is called.

Why this shape. Sentry gives each integration a class with a static
``setup_once()``, options in its constructor, one registry of import paths,
and :class:`DidNotEnable` for a library that is missing; it patches once per
process and cannot be undone. OpenTelemetry's ``BaseInstrumentor`` has
``instrument(**kwargs)`` and ``uninstrument()``, a flag that makes both
idempotent (``is_instrumented_by_opentelemetry``) and a list of the
libraries it needs (``instrumentation_dependencies``); its options are
untyped keywords, and per-object instrumentors add their own
``instrument_app(app)`` or ``instrument_client(client)``. Ours keeps from
Sentry the registry and :class:`DidNotEnable`, from OpenTelemetry the
pair ``instrument``/``uninstrument`` with an ``is_instrumented`` question,
and takes the target as an argument, since almost everything here is
instrumented per object (an app, a session, a client) and tests undo it per
object. Module functions rather than classes: there is no state to hold
between calls but what the target itself holds, and the three calls read as
``telemetry_requests.instrument(...)``. Options are one frozen dataclass
per integration instead of free keywords, so that an unknown or bad option
fails at ``instrument`` with the option's name.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing as t


class DidNotEnable(RuntimeError):
    """An integration cannot be enabled, usually because its extra is missing."""


def require(module: str, extra: str) -> types.ModuleType:
    """Import ``module`` or raise :class:`DidNotEnable` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DidNotEnable(
            f"{module} is not installed: pip install 'flask-telemetry[{extra}]'"
        ) from exc


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Integration:
    """One integration: where it lives and what it needs."""

    #: The name :func:`load` takes, and the module's last part.
    name: str
    #: The top-level module of the library it observes.
    library: str
    #: The extra that installs that library, or None when it is a dependency
    #: of flask-telemetry itself.
    extra: str | None
    #: What ``instrument()`` takes as its target.
    target: str

    @property
    def module(self) -> str:
        """The integration's import path."""
        return f"{__name__}.{self.name}"


#: Every integration, by name.
INTEGRATIONS: t.Mapping[str, Integration] = types.MappingProxyType(
    {
        integration.name: integration
        for integration in (
            Integration(
                name="celery", library="celery", extra="celery", target="Celery app"
            ),
            Integration(name="rq", library="rq", extra="rq", target="None"),
            Integration(
                name="sqlalchemy",
                library="flask_sqlalchemy",
                extra=None,
                target="Flask app",
            ),
            Integration(
                name="requests",
                library="requests",
                extra="requests",
                target="requests.Session",
            ),
            Integration(
                name="httpx",
                library="httpx",
                extra="httpx",
                target="httpx.Client or httpx.AsyncClient",
            ),
            Integration(
                name="exceptions", library="flask", extra=None, target="Flask app"
            ),
            Integration(
                name="flask_limiter",
                library="flask_limiter",
                extra="limiter",
                target="Flask app",
            ),
        )
    }
)


def load(name: str) -> types.ModuleType:
    """The integration module called ``name``, imported.

    :raises ValueError: no integration has that name.
    :raises DidNotEnable: its library is not installed; the message names
        the extra.
    """
    integration = INTEGRATIONS.get(name)
    if integration is None:
        raise ValueError(
            f"No integration is called {name!r}: one of {', '.join(INTEGRATIONS)}."
        )
    if integration.extra is not None:
        require(integration.library, integration.extra)
    return importlib.import_module(integration.module)


__all__ = ["INTEGRATIONS", "DidNotEnable", "Integration", "load", "require"]
