"""Hostile input cannot hurt: arbitrary record() arguments, metadata, headers, paths.

Thrown at a real app on SQLite and PostgreSQL: no exception reaches a view,
every stored row passes the storage schema, no secret from the inputs is
stored anywhere in the table.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Bundle, MakeApp, require_backend
from flask_telemetry import ActorType, EventType, Severity
from flask_telemetry.storage.row import FIELDS
from flask_telemetry.storage.schema import TelemetryEventSchema

SECRET_KEYS = ["password", "PassWord", "api-key", "X-Auth-Token", "session", "secret"]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """SQLite and PostgreSQL only: the suite's run time stays modest."""
    name: str = request.param
    require_backend(name)
    return name


def _secret() -> st.SearchStrategy[str]:
    return st.text("0123456789abcdef", min_size=16, max_size=24).map(
        lambda h: f"sekret-{h}"
    )


# JSON can hold these (after cleaning); the dirty ones make an event invalid.
clean_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.just("\x00\ud800\x1b[2J"),
    st.integers(0, 20).map(lambda n: "x" * (n * 1000)),
)
dirty_scalars = st.one_of(
    clean_scalars,
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=10),
    st.sets(st.integers(), max_size=2),
)
keys = st.one_of(st.text(max_size=12), st.integers(), st.none(), st.booleans())


def _values(scalars: st.SearchStrategy[t.Any]) -> st.SearchStrategy[t.Any]:
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys, children, max_size=4),
        ),
        max_leaves=20,
    )


clean_values, dirty_values = _values(clean_scalars), _values(dirty_scalars)


@st.composite
def metadata(draw: st.DrawFn) -> tuple[t.Any, list[str]]:
    """Metadata with secrets hidden under secret keys, maybe deep or cyclic."""
    dirty = draw(st.integers(0, 3)) == 0
    values = dirty_values if dirty else clean_values
    base = draw(st.one_of(st.none(), st.dictionaries(keys, values, max_size=5)))
    if base is None:
        return draw(st.one_of(st.none(), values)), []
    secrets = []
    node = base
    for _ in range(draw(st.integers(0, 3))):
        secret = draw(_secret())
        secrets.append(secret)
        node[draw(st.sampled_from(SECRET_KEYS))] = draw(
            st.sampled_from([secret, [secret], {"inner": secret}])
        )
        child: dict[t.Any, t.Any] = {}
        node[draw(st.text(max_size=5))] = child
        node = child
    depth = draw(st.sampled_from([0, 0, 5, 150]))
    for _ in range(depth):
        child = {}
        node["d"] = child
        node = child
    if dirty and draw(st.booleans()):
        node["cycle"] = base
    return base, secrets


junk = st.one_of(
    st.text(max_size=20), st.integers(), st.none(), st.lists(st.integers(), max_size=2)
)


@st.composite
def record_args(draw: st.DrawFn) -> tuple[tuple[t.Any, t.Any], dict[str, t.Any]]:
    """Mostly valid arguments (so that secrets reach the table), or one broken."""
    broken = draw(st.sampled_from([None, None, None, "type", "sev", "actor", "id"]))
    event_type = draw(
        junk
        if broken == "type"
        else st.one_of(
            st.sampled_from(list(EventType)),
            st.sampled_from([e.value for e in EventType]),
        )
    )
    severity = draw(junk if broken == "sev" else st.sampled_from(list(Severity)))
    kwargs: dict[str, t.Any] = {}
    if broken == "actor":
        kwargs["actor_type"] = draw(junk)
    elif draw(st.booleans()):
        kwargs["actor_type"] = draw(st.sampled_from(list(ActorType)))
    kwargs["actor_id"] = draw(
        st.one_of(junk, st.integers(2**63))
        if broken == "id"
        else st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
    )
    return (event_type, severity), kwargs


header_text = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),  # invalid UTF-8
    st.just("Mozilla\x00/5.0\xff\xfe"),
    st.integers(0, 3).map(lambda n: "U" * (n * 400)),
)
traceparents = st.one_of(
    header_text,
    st.tuples(
        st.text("0123456789abcdef", min_size=2, max_size=2),
        st.text("0123456789abcdef", min_size=32, max_size=32),
        st.text("0123456789abcdef", min_size=16, max_size=16),
    ).map(lambda p: f"{p[0]}-{p[1]}-{p[2]}-01"),
)
paths = st.one_of(
    st.text(max_size=30).map(lambda s: "/v/" + s),
    st.binary(max_size=30).map(lambda b: "/" + b.decode("latin-1")),
    st.sampled_from(["/v/ok", "/health", "/static/x", "/"]),
)


def _to_latin1(text: str) -> str:
    # WSGI environ values are bytes decoded as latin-1.
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def _schema_row(row: sa.Row[t.Any]) -> dict[str, t.Any]:
    data = row._asdict()
    data.pop("id")
    occurred = data["occurred_at"]
    if occurred.tzinfo is None:  # DATETIME columns give naive UTC back
        data["occurred_at"] = occurred.replace(tzinfo=dt.UTC)
    assert set(data) == set(FIELDS)
    return data


@pytest.fixture
def hostile(make_app: MakeApp) -> Bundle:
    bundle = make_app(TELEMETRY_METADATA_MAX_BYTES=4096)
    app, telemetry = bundle.app, bundle.telemetry
    app.config["PROPAGATE_EXCEPTIONS"] = True  # a leak would fail the test

    @app.route("/v/<path:rest>", methods=["GET", "POST"])
    def view(rest: str) -> str:
        args = app.config["HOSTILE_ARGS"]
        telemetry.record(*args[0], **args[1])
        return "ok"

    @app.get("/v/ok")
    def ok() -> str:
        return "ok"

    return bundle


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    args=record_args(),
    meta=metadata(),
    request_id=header_text,
    traceparent=traceparents,
    user_agent=header_text,
    path=paths,
)
def test_hostile_input_cannot_hurt(
    hostile: Bundle,
    args: tuple[tuple[t.Any, t.Any], dict[str, t.Any]],
    meta: tuple[t.Any, list[str]],
    request_id: str,
    traceparent: str,
    user_agent: str,
    path: str,
) -> None:
    metadata_value, secrets = meta
    positional, kwargs = args
    kwargs["metadata"] = metadata_value
    hostile.app.config["HOSTILE_ARGS"] = (positional, kwargs)
    client = hostile.client()
    environ = {
        "HTTP_X_REQUEST_ID": _to_latin1(request_id),
        "HTTP_TRACEPARENT": _to_latin1(traceparent),
        "HTTP_USER_AGENT": _to_latin1(user_agent),
        "HTTP_AUTHORIZATION": f"Bearer {secrets[0]}" if secrets else "",
    }
    for target in ("/v/x", _to_latin1(path)):
        response = client.get("/", environ_overrides={**environ, "PATH_INFO": target})
        # 308: Werkzeug redirects a path with "//" in it to the merged path.
        assert response.status_code in (200, 308, 404, 405)
        if response.status_code == 200:
            assert response.text == "ok"
    with hostile.app.app_context():
        # The explicit event too, outside a request.
        hostile.telemetry.record(*positional, **kwargs)
    rows = hostile.rows()
    # /v/x always reaches the view: its request end is stored, sampled or not.
    assert any(r.event_type == "http_request_end" for r in rows)
    schema = TelemetryEventSchema()
    for row in rows:
        data = _schema_row(row)
        assert schema.validate(data) == {}, data
        stored = json.dumps(data, ensure_ascii=False, default=str)
        for secret in secrets:
            assert secret not in stored
    with hostile.app.app_context():
        stats = hostile.telemetry.stats()
        assert stats["accepted"] == stats["written"] + sum(stats["dropped"].values())
        assert stats["dropped"]["storage_error"] == 0
        hostile.db.session.execute(sa.delete(hostile.traces))
        hostile.db.session.commit()
