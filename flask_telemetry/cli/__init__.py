"""The ``flask telemetry`` command group, registered on every application by
:meth:`Telemetry.init_app <flask_telemetry.Telemetry.init_app>`.

Each command reads the application's telemetry state
(``current_app.extensions["telemetry"]``), as the dashboard does.

:meta private: internal; the commands are documented in ``docs/cli.rst``, not
this package's modules.
"""

from __future__ import annotations

from flask.cli import AppGroup

from . import check, read

telemetry_cli = AppGroup(
    "telemetry",
    help="Check, read and prune the telemetry table; show the telemetry settings.",
)
for _command in (*check.COMMANDS, *read.COMMANDS):
    telemetry_cli.add_command(_command)

__all__: list[str] = []
