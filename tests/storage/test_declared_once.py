"""A column and a request end's figure are each declared once.

The row's builders, checks and readers are made from ``storage/row.py``'s
declaration: a column added there (and to the table) is written, queued,
sized, checked and read with no other change. The figures of
``http_request_end`` are made from ``storage/figures.py``'s: the mapping
writes them, and the SQL of every database and the pages' Python read
each one the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import typing as t

import pytest
import sqlalchemy as sa

from conftest import Bundle
from flask_telemetry.domain import mapping
from flask_telemetry.domain.request_end import RequestEnd
from flask_telemetry.reading import _dialects
from flask_telemetry.storage import figures
from reading_data import NOW, engine_of

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "flask_telemetry"

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


def test_the_request_end_is_written_from_the_figures() -> None:
    """Every figure is written, under its name, in the declared order, by
    the mapping; the readers read exactly the figures with a check."""
    end = RequestEnd(
        request_id="r",
        route_name="shop.pay",
        ip_address=None,
        user_agent=None,
        method="POST",
        trace_id="a" * 32,
        parent_id="b" * 16,
        status_code=503,
        duration_ms=12.3456789,
        slow=True,
        sample_rate=0.25,
        db=(7, 3.14159265, False),
    )
    written = mapping.request_end_metadata(mapping.request_end_facts(end, "v1"))
    assert list(written) == [f.name for f in figures.FIGURES if f.name != "exception"]
    assert written["duration_ms"] == 12.346
    assert written["db_ms"] == 3.142
    assert written["db_count"] == 7
    assert written["release"] == "v1"
    end.exception = "ValueError"
    written = mapping.request_end_metadata(mapping.request_end_facts(end))
    assert written["exception"] == "ValueError"
    assert "slow" not in written
    assert "release" not in written
    assert list(_dialects.REQUEST_END_KEYS) == [f.name for f in figures.READ]


#: Values each read figure is stored with: good ones, the wrong type, out
#: of range, and JSON of every shape.
VALUES: list[t.Any] = [
    0,
    1,
    7,
    200,
    999,
    1000,
    -5,
    99,
    200.0,
    0.5,
    1e-6,
    3.25,
    1e12,
    1e13,
    10**30,
    True,
    False,
    None,
    "200",
    "yes",
    "v" * 70,
    "",
    [200],
    {"a": 1},
]


def _stored_rows(bundle: Bundle) -> list[dict[str, t.Any]]:
    """One request end per (figure, value), stored with plain SQL."""
    rows = []
    for figure in figures.READ:
        for value in VALUES:
            base: dict[str, t.Any] = {"status": 200, "duration_ms": 1.5}
            rows.append({**base, figure.name: value})
    table = bundle.traces
    engine = engine_of(bundle)
    at = NOW - dt.timedelta(minutes=3)
    with engine.begin() as conn:
        for i, metadata in enumerate(rows):
            meta: t.Any = sa.bindparam("m", json.dumps(metadata), type_=sa.Text())
            if engine.dialect.name == "postgresql":
                meta = sa.cast(meta, sa.dialects.postgresql.JSON)
            conn.execute(
                sa.insert(table).values(
                    actor_type="system",
                    event_type="http_request_end",
                    severity="info",
                    request_id=f"row-{i}",
                    occurred_at=at
                    if engine.dialect.name == "postgresql"
                    else at.replace(tzinfo=None),
                    metadata=meta,
                )
            )
    return rows


def test_every_database_and_the_pages_read_each_figure_alike(
    bundle: Bundle,
) -> None:
    """For each figure stored with each value, the SQL of the database reads
    what :func:`figures.read` (the pages' Python) reads."""
    rows = _stored_rows(bundle)
    table = bundle.traces
    engine = engine_of(bundle)
    with engine.connect() as conn:
        froms, exprs = _dialects.request_end_facts(conn.dialect, table)
        query = (
            sa.select(table.c.request_id, *(exprs[f.name] for f in figures.READ))
            .select_from(*froms)
            .order_by(table.c.id)
        )
        found = conn.execute(query).all()
    assert len(found) == len(rows)
    for stored, (_, *read) in zip(rows, found, strict=True):
        for figure, value in zip(figures.READ, read, strict=True):
            expected = figures.read_key(stored, figure.name)
            if figure.check in ("flag", "present"):
                value = bool(value)
            elif figure.check == "number" and value is not None:
                value = pytest.approx(float(value), rel=1e-12)
            assert value == expected, (figure.name, stored[figure.name], value)
