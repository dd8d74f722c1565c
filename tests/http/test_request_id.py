"""Request ids: a safe incoming id is kept and echoed; anything else replaced."""

from __future__ import annotations

import uuid

import pytest

from conftest import Bundle, MakeApp
from flask_telemetry.domain.correlation import new_request_id

HOSTILE = [
    "x" * 65,
    "has space",
    "new\nline",
    "tab\there",
    "'; DROP TABLE telemetry_traces; --",
    "1 OR 1=1",
    "ünïcödé",
    "emoji-🚀",
    "<script>alert(1)</script>",
    'quote"d',
    "",
]


@pytest.fixture
def echo(bundle: Bundle) -> Bundle:
    @bundle.app.get("/echo")
    def echo() -> str:
        return "ok"

    return bundle


@pytest.mark.parametrize("incoming", ["abc", "A.b_c:d-9", "x" * 64, str(uuid.uuid4())])
def test_valid_request_id_is_kept_and_echoed(echo: Bundle, incoming: str) -> None:
    response = echo.client().get("/echo", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] == incoming
    (row,) = echo.rows()
    assert row.request_id == incoming


@pytest.mark.parametrize("incoming", HOSTILE)
def test_hostile_request_id_is_replaced(echo: Bundle, incoming: str) -> None:
    # Straight into the WSGI environ, as a raw server would pass it: the test
    # client's own header checks would refuse some of these.
    raw = incoming.encode("utf-8").decode("latin-1")
    response = echo.client().get("/echo", environ_overrides={"HTTP_X_REQUEST_ID": raw})
    echoed = response.headers["X-Request-ID"]
    assert echoed != incoming
    assert uuid.UUID(echoed).version == 4
    (row,) = echo.rows()
    assert row.request_id == echoed


def test_missing_request_id_is_generated_per_request(echo: Bundle) -> None:
    client = echo.client()
    first = client.get("/echo").headers["X-Request-ID"]
    second = client.get("/echo").headers["X-Request-ID"]
    assert first != second
    assert [r.request_id for r in echo.rows()] == [first, second]


def test_header_name_is_configurable(make_app: MakeApp) -> None:
    bundle = make_app(TELEMETRY_REQUEST_ID_HEADER="X-Correlation-ID")

    @bundle.app.get("/echo")
    def echo() -> str:
        return "ok"

    response = bundle.client().get("/echo", headers={"X-Correlation-ID": "corr-1"})
    assert response.headers["X-Correlation-ID"] == "corr-1"
    assert "X-Request-ID" not in response.headers
    assert bundle.rows()[0].request_id == "corr-1"


def test_the_response_carries_one_request_id_header(echo: Bundle) -> None:
    """A view's own X-Request-ID headers (any case, repeated) are replaced by
    the request's id, once; a response without one gets it appended."""

    @echo.app.get("/own")
    def own() -> tuple[str, int, list[tuple[str, str]]]:
        return "ok", 200, [("x-request-id", "from-view"), ("X-Request-Id", "again")]

    client = echo.client()
    response = client.get("/own", headers={"X-Request-ID": "rid-1"})
    assert response.headers.getlist("X-Request-ID") == ["rid-1"]
    plain = client.get("/echo", headers={"X-Request-ID": "rid-2"})
    assert plain.headers.getlist("X-Request-ID") == ["rid-2"]
    assert list(plain.headers)[-1] == ("X-Request-ID", "rid-2")


def test_new_request_ids_are_canonical_uuid4_text() -> None:
    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for made in ids:
        parsed = uuid.UUID(made)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == made  # lower-case hex, 8-4-4-4-12
