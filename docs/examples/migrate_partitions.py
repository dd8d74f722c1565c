"""Flask-Migrate with a partitioned telemetry_traces: autogenerate leaves the
partitions alone.

PostgreSQL lists each partition as a table of its own; without this filter
``flask db migrate`` would write a migration dropping every one of them.
Pass it to Flask-Migrate, which hands it to Alembic's ``context.configure``:

    migrate.init_app(app, db, include_name=include_name)
"""

from __future__ import annotations

import re
import typing as t

#: pg_partman's daily partitions (telemetry_traces_p2025_01_31), the
#: partitions of docs/examples/partitioning.sql (telemetry_traces_20250131),
#: and the default partition of either.
PARTITION = re.compile(r"telemetry_traces_(p?\d{4}_?\d{2}_?\d{2}|default)\Z")


def include_name(name: str | None, type_: str, parent_names: t.Any) -> bool:
    """Alembic's ``include_name`` hook: every name but the partitions'."""
    return not (type_ == "table" and name is not None and PARTITION.match(name))
