"""A refused dashboard request is answered exactly like a path that does not
exist; an allowed one for an unknown page gets the dashboard's 404 page."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from conftest import Bundle
from flask_telemetry.dashboard.blueprint import CONTENT_SECURITY_POLICY

METHODS = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "TRACE",
    "PROPFIND",
    "BREW",
]
PATHS = [
    "",
    "/",
    "/route",
    "/route?name=shop.item",
    "/trace/x",
    "/trace/a%00b",
    "/trace/",
    "/events",
    "/events/",
    "/events?actor_id=9223372036854775808",
    "/static/dashboard.css",
    "/static/",
    "/static",
    "/no-such-page",
    "/a/b/c",
    "//events",
    "/%2e%2e/",
    "/?window=custom&since=0001-01-01T00:00%2B01:00",
]


def _shape(response: TestResponse) -> tuple[int, list[str], bytes]:
    response.close()
    return (
        response.status_code,
        sorted(k for k, _ in response.headers.items() if k != "Content-Length"),
        response.data,
    )


def _app(bundle: Bundle, authorize: t.Callable[[], t.Any]) -> Flask:
    app = bundle.app

    @app.get("/items/<int:item>")
    def item(item: int) -> str:
        return "ok"

    @app.after_request
    def stamp(response: t.Any) -> t.Any:
        # An app's own hook: it must run on a refused request as on any 404.
        response.headers["X-App"] = "1"
        return response

    bundle.telemetry.init_dashboard(app, authorize=authorize)
    return app


@pytest.mark.parametrize(
    "authorize",
    [lambda: False, lambda: None, lambda: 1 / 0],
    ids=["false", "none", "raises"],
)
def test_a_refused_request_looks_like_a_missing_path(
    bundle: Bundle, authorize: t.Any
) -> None:
    client = _app(bundle, authorize).test_client()
    for method in METHODS:
        missing = _shape(client.open("/no-such-path-here", method=method))
        assert missing[0] == 404
        assert "X-Request-ID" in missing[1]
        for prefix in ("/_telemetry", "/_telemetry/"):
            for path in PATHS:
                url = (prefix.rstrip("/") + path) if path else prefix
                refused = _shape(client.open(url, method=method))
                assert refused == missing, (method, url)


def test_an_unknown_page_gets_the_dashboard_404(bundle: Bundle) -> None:
    client = _app(bundle, lambda: True).test_client()
    for url in (
        "/_telemetry/trace/no-such-request",
        "/_telemetry/trace/a%00b",
        "/_telemetry/no-such-page",
        "/_telemetry/route",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        page = response.get_data(as_text=True)
        assert "<h1>Not found</h1>" in page
        assert 'href="/_telemetry/?window=1h">Back to the overview</a>' in page
    response = client.get("/_telemetry")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/_telemetry/")
    for method in ("TRACE", "PROPFIND", "BREW", "OPTIONS"):
        response = client.open("/_telemetry/events", method=method)
        assert response.status_code == 405, method
        assert response.headers["Allow"] == "GET, HEAD"


def test_refused_requests_are_recorded_like_other_404s(bundle: Bundle) -> None:
    client = _app(bundle, lambda: False).test_client()
    assert client.get("/_telemetry/").status_code == 404
    ends = [r for r in bundle.rows() if r.event_type == "http_request_end"]
    assert len(ends) == 1
    assert ends[0].metadata["status"] == 404
