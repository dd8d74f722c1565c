"""The operator's dashboard: read-only pages over the read API.

Enabled with :meth:`Telemetry.init_dashboard
<flask_telemetry.Telemetry.init_dashboard>`; see ``docs/dashboard.rst``.
"""

from __future__ import annotations

from .blueprint import BLUEPRINT_NAME, Authorize, make_blueprint

__all__ = ["BLUEPRINT_NAME", "Authorize", "make_blueprint"]
