"""The operator's dashboard: read-only pages over the read API.

Enabled with :meth:`Telemetry.init_dashboard
<flask_telemetry.Telemetry.init_dashboard>`, its one entry point; see
``docs/dashboard.rst``.

:meta private: internal; the pages are documented, not this package's modules.
"""

from __future__ import annotations

__all__: list[str] = []
