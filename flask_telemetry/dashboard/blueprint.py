"""The blueprint: who may see the pages, and the headers every page gets."""

from __future__ import annotations

import logging
import pathlib
import typing as t

from flask import (
    Blueprint,
    Response,
    abort,
    g,
    render_template,
    request,
    send_from_directory,
    url_for,
)

from ..reading import UNMATCHED, visible
from . import budget, views
from .window import PRESETS, parse_window

if t.TYPE_CHECKING:
    from .. import Telemetry

logger = logging.getLogger("flask_telemetry")

#: Called in each dashboard request; a false value (or an exception) answers 404.
Authorize = t.Callable[[], t.Any]

BLUEPRINT_NAME = "telemetry_dashboard"

#: No script at all, styles and images from the dashboard's own files only
#: (inline SVG is part of the document), no framing, forms submit back here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Request ids and filters in the URLs stay on the page.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STATIC = pathlib.Path(__file__).with_name("static")
_READ_METHODS = frozenset({"GET", "HEAD"})
#: Routes accept every method so that a refused request is a 404 whatever its
#: method (a 405 would tell that the page exists); an allowed one gets 405.
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def make_blueprint(telemetry: Telemetry, *, authorize: Authorize) -> Blueprint:
    """The dashboard's blueprint, reading through ``telemetry``.

    Every request, static files included, asks ``authorize()`` first: a
    false value or an exception answers 404, as for a page that does not
    exist. Allowed requests other than GET and HEAD answer 405.
    """
    bp = Blueprint(
        BLUEPRINT_NAME,
        __name__,
        template_folder="templates",
    )

    @bp.before_request
    def _check() -> None:
        try:
            allowed = bool(authorize())
        except Exception:
            logger.exception("The dashboard's authorize callable failed")
            allowed = False
        if not allowed:
            abort(404)
        g._telemetry_dashboard = True
        if request.method not in _READ_METHODS:
            abort(405, valid_methods=sorted(_READ_METHODS))

    @bp.after_request
    def _headers(response: Response) -> Response:
        # Only on allowed requests: a refused one must look like any 404.
        if g.get("_telemetry_dashboard"):
            response.headers.update(HEADERS)
        return response

    @bp.context_processor
    def _helpers() -> dict[str, t.Any]:
        window = parse_window(request.args)

        def page_url(endpoint: str, **args: t.Any) -> str:
            """A dashboard URL keeping the page's window."""
            merged = {**window.args(), **args}
            clean = {k: v for k, v in merged.items() if v not in (None, "")}
            return url_for(f"{BLUEPRINT_NAME}.{endpoint}", **clean)

        def preset_url(name: str) -> str:
            """This page with the preset window ``name``, filters kept."""
            args: dict[str, t.Any] = {
                k: v
                for k, v in request.args.items()
                if k not in ("window", "since", "until", "before_id", "exact")
            }
            assert request.endpoint is not None
            return url_for(
                request.endpoint, **(request.view_args or {}), **args, window=name
            )

        def exact_url() -> str:
            """This page with its figures read from every row."""
            assert request.endpoint is not None
            args: dict[str, t.Any] = dict(request.args.items())
            args["exact"] = 1
            return url_for(request.endpoint, **(request.view_args or {}), **args)

        return {
            "page_url": page_url,
            "preset_url": preset_url,
            "exact_url": exact_url,
            "page_seconds": f"{budget.PAGE_SECONDS:g}",
            "pretty": views.pretty,
            "visible": visible,
            "end_columns": views.end_columns,
            "window": window,
            "presets": list(PRESETS),
            "unmatched_label": UNMATCHED,
        }

    @bp.errorhandler(budget.TooSlow)
    def _too_slow(error: budget.TooSlow) -> tuple[str, int]:
        return render_template("telemetry_dashboard/slow.html", error=error), 503

    reader = views.Reader(telemetry)
    for rule, endpoint, view in (
        ("/", "overview", reader.overview),
        ("/route", "route", reader.route),
        ("/trace/<path:request_id>", "trace", reader.trace),
        ("/events", "events", reader.events),
        # The CSS, behind authorize and with every method like the pages.
        ("/static/<path:filename>", "static", _static),
    ):
        bp.add_url_rule(rule, endpoint, view, methods=_ANY_METHOD)
    return bp


def _static(filename: str) -> Response:
    return send_from_directory(_STATIC, filename)
