"""Opt-in integrations that record the event vocabulary by themselves.

One module per library, imported only when enabled; each library is an
optional extra of this package. Every integration records through
:meth:`Telemetry.record <flask_telemetry.Telemetry.record>`, so validation,
privacy, sampling and accounting apply, and never raises into the code it
observes.
"""

from __future__ import annotations

import importlib
import types


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


__all__ = ["DidNotEnable", "require"]
