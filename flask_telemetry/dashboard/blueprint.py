"""The blueprint: who may see the pages, and the headers every page gets."""

from __future__ import annotations

import logging
import pathlib
import typing as t

from flask import (
    Blueprint,
    Response,
    abort,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask.sansio.blueprints import BlueprintSetupState

from ..reading import UNMATCHED, visible
from . import budget, display, params, views
from .window import parse_window

if t.TYPE_CHECKING:
    from .._wiring import AppState

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
#: Set in the WSGI environ of a request ``authorize()`` let through (never in
#: ``g``, which a held application context shares between requests).
_ALLOWED = "flask_telemetry.dashboard.allowed"


def make_blueprint(telemetry: AppState, *, authorize: Authorize) -> Blueprint:
    """The dashboard's blueprint, reading through ``telemetry``.

    Every request under the prefix, static files included, asks
    ``authorize()`` first: a false value or an exception answers what the
    app answers for a path that does not exist. Routing cannot tell first:
    the rules take every method (no 405), the bare prefix and any other
    path under it have rules of their own (no redirect, no routing 404).
    Allowed requests other than GET and HEAD answer 405, an unknown page
    the dashboard's 404 page.
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
        request.environ[_ALLOWED] = True
        # Not recorded, and no request id header: telemetry forgets it.
        telemetry.request.forget()
        budget.start()
        if request.method not in _READ_METHODS:
            abort(405, valid_methods=sorted(_READ_METHODS))

    @bp.after_request
    def _headers(response: Response) -> Response:
        # Only on allowed requests: a refused one must look like any 404.
        if request.environ.get(_ALLOWED):
            response.headers.update(HEADERS)
        return response

    @bp.context_processor
    def _helpers() -> dict[str, t.Any]:
        limits = views.window_rules(telemetry)
        window = parse_window(request.args, **limits)

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
            "pretty": display.pretty,
            "end_columns": display.end_columns,
            "visible": visible,
            "window": window,
            "presets": list(limits["presets"]),
            "unmatched_label": UNMATCHED,
        }

    @bp.errorhandler(budget.TooSlow)
    def _too_slow(error: budget.TooSlow) -> tuple[str, int]:
        return render_template("telemetry_dashboard/slow.html", error=error), 503

    @bp.errorhandler(views.Missing)
    def _missing_page(error: views.Missing) -> tuple[str, int]:
        return render_template("telemetry_dashboard/missing.html", error=error), 404

    reader = views.Reader(telemetry)
    routes: list[tuple[str, str, t.Callable[..., t.Any]]] = [
        (page.rule, name, getattr(reader, name)) for name, page in params.PAGES.items()
    ]
    routes += [
        # The CSS, behind authorize like the pages; not named "static", so
        # that a refused request is not left out by TELEMETRY_EXCLUDE's
        # "*.static" when a missing path is not.
        ("/static/<path:filename>", "stylesheet", _static),
        ("", "bare", _bare),
        ("/<path:path>", "missing", _missing),
    ]

    @bp.record
    def _add_rules(state: BlueprintSetupState) -> None:
        # Werkzeug rules of our own: Flask's add_url_rule gives a rule a set
        # of methods, and a method outside it answers 405 with Allow.
        prefix = (state.url_prefix or "").rstrip("/")
        for rule, endpoint, view in routes:
            if not prefix + rule:
                continue  # the bare prefix, when there is none
            name = f"{state.name_prefix}.{state.name}.{endpoint}".lstrip(".")
            state.app.url_map.add(
                state.app.url_rule_class(
                    prefix + rule,
                    endpoint=name,
                    methods=None,  # every method, the unknown ones too
                    merge_slashes=False,  # no redirect for a//b
                )
            )
            state.app.view_functions[name] = view

    return bp


def _static(filename: str) -> Response:
    return send_from_directory(_STATIC, filename)


def _bare() -> Response:
    """The prefix without its slash: the overview."""
    return redirect(url_for(f"{BLUEPRINT_NAME}.overview"))  # type: ignore[return-value]


def _missing(path: str) -> t.NoReturn:
    raise views.Missing(f"There is no dashboard page at {path[:200]!r}.")
