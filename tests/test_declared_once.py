"""A column is declared once.

The row's builders, checks and readers are made from ``storage/row.py``'s
declaration: a column added there (and to the table) is written, queued,
sized, checked and read with no other change.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "flask_telemetry"

#: The field a throwaway column adds to the declaration, after the last.
NEW_FIELD = "    host: t.Annotated[str | None, Spec(length=40)] = None\n"

#: Run with the package copy whose declaration has the new column: a SQLite
#: table made from the model, events recorded in sync and async delivery
#: (one with a control character and one too long for a column, one
#: request end), validated by the schema, then read back.
SCRIPT = textwrap.dedent(
    """
    import sys
    import flask
    import sqlalchemy as sa
    from flask_sqlalchemy import SQLAlchemy

    import flask_telemetry
    from flask_telemetry import Telemetry, reading
    from flask_telemetry.domain import mapping
    from flask_telemetry.domain.delivery.size import pending_bytes
    from flask_telemetry.storage import row
    from flask_telemetry.storage.schema import TelemetryEventSchema

    assert flask_telemetry.__file__.startswith(sys.argv[1]), flask_telemetry.__file__
    assert row.FIELDS[-1] == "host", row.FIELDS
    queued = mapping.pending(
        actor_type="system", event_type="cache_miss", severity="info",
        occurred_at=1.0, host="h" * 50,
    )
    assert len(queued) == 11 and pending_bytes(queued) > 0
    assert mapping.build_values(queued)[-1] == "h" * 40
    schema = TelemetryEventSchema()
    assert "host" in schema.validate({"host": "h" * 41})
    for delivery in ("sync", "async"):
        app = flask.Flask(__name__)
        app.config.update(
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{sys.argv[2]}/{delivery}.db",
            TELEMETRY_DELIVERY=delivery,
        )
        db = SQLAlchemy(app)
        telemetry = Telemetry(app)

        @app.get("/")
        def index():
            telemetry.record("cache_miss", metadata={"key": "k"})
            return "ok"

        with app.app_context():
            db.create_all()
            table = telemetry.trace_model.__table__
            assert table.c.host.type.length == 40 and table.c.host.nullable
            telemetry.record("cache_hit", metadata={"n": 1})
        assert app.test_client().get("/").status_code == 200
        with app.app_context():
            telemetry.flush(10.0)
            found = telemetry.events(limit=10)
            assert sorted(e.event_type for e in found) == [
                "cache_hit", "cache_miss", "http_request_end"
            ], found
            with db.engine.connect() as conn:
                hosts = conn.execute(sa.select(table.c.host)).scalars().all()
            assert hosts == [None, None, None], hosts
            stats = telemetry.stats()
            assert stats["written"] == 3 and not any(stats["dropped"].values())
            telemetry.shutdown(5)
    print("ok")
    """
)


def test_a_column_added_to_the_declaration_is_written_and_read(
    tmp_path: pathlib.Path,
) -> None:
    """The package with one more field in ``TraceEvent`` (and nothing else
    changed) makes the table, checks, queues, writes and reads its rows."""
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "flask_telemetry")
    declaration = copy / "flask_telemetry" / "storage" / "row.py"
    source = declaration.read_text()
    last = "    occurred_at: "
    at = source.index("\n", source.index(last)) + 1
    declaration.write_text(source[:at] + NEW_FIELD + source[at:])
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(copy), str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(copy)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
