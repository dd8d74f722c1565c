"""TELEMETRY_BIND_KEY: telemetry in a database of its own, through a bind."""

from __future__ import annotations

import typing as t
import uuid

import pytest
import sqlalchemy as sa

from conftest import MakeApp, server_url
from flask_telemetry import ConfigVars, EventType


@pytest.fixture
def telemetry_url(backend: str, tmp_path: t.Any) -> t.Iterator[str]:
    """A second database for telemetry only: a file on SQLite, a database
    made on the PostgreSQL server (dropped at the end)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'telemetry.db'}"
        return
    url = server_url(backend)
    assert url is not None
    name = f"ft_bind_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_telemetry_on_its_own_bind(
    telemetry_url: str, make_app: MakeApp, delivery: str
) -> None:
    bundle = make_app(
        SQLALCHEMY_BINDS={"telemetry": telemetry_url},
        **{ConfigVars.BIND_KEY: "telemetry", ConfigVars.DELIVERY: delivery},
    )

    @bundle.app.post("/note")
    def note() -> str:
        bundle.db.session.add(bundle.note(body="app data"))
        bundle.db.session.commit()
        bundle.telemetry.record(EventType.RESOURCE_MUTATION, metadata={"n": 1})
        return "ok"

    assert bundle.client().post("/note").status_code == 200
    rows = bundle.rows()
    assert [r.event_type for r in rows] == ["resource_mutation", "http_request_end"]
    stats = bundle.telemetry.stats()
    assert stats["accepted"] == stats["written"] == 2
    assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())

    with bundle.app.app_context():
        default = bundle.db.engines[None]
        separate = bundle.db.engines["telemetry"]
    assert sa.inspect(default).has_table("notes")
    # The table lives in the telemetry database only, and so do the rows.
    assert not sa.inspect(default).has_table("telemetry_traces")
    assert not sa.inspect(separate).has_table("notes")
    with separate.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM telemetry_traces"))
        assert count.scalar() == 2
