"""Sign-in and step-up (second factor); records the ``auth_*`` events."""

from __future__ import annotations

import hmac
import ipaddress
import typing as t

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from flask_telemetry import EventType, Severity

from .extensions import db, telemetry
from .models import User

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.before_app_request
def load_user() -> None:
    """Put the signed-in user on ``g.user`` for views and the actor loader."""
    user_id = session.get("user_id")
    g.user = db.session.get(User, user_id) if user_id is not None else None


def _form() -> dict[str, t.Any]:
    return request.get_json(silent=True) or request.form.to_dict()


@bp.post("/login")
def login() -> tuple[dict[str, t.Any], int]:
    data = _form()
    user = db.session.scalar(db.select(User).filter_by(username=data.get("username")))
    if user is None or not user.check_password(str(data.get("password", ""))):
        # Never the submitted username or password: only that it failed.
        telemetry.record(EventType.AUTH_LOGIN_FAILURE, Severity.NOTICE)
        return {"error": "invalid credentials"}, 401
    session.clear()
    session["user_id"] = user.id
    g.user = user
    telemetry.record(EventType.AUTH_LOGIN_SUCCESS)
    return {"user": user.username, "stepup_required": user.is_admin}, 200


@bp.post("/stepup")
def stepup() -> tuple[dict[str, t.Any], int]:
    if g.user is None:
        abort(401)
    if str(_form().get("code", "")) != g.user.stepup_code:
        telemetry.record(EventType.AUTH_STEPUP_FAILURE, Severity.WARNING)
        return {"error": "invalid code"}, 403
    session["stepped_up"] = True
    telemetry.record(EventType.AUTH_STEPUP_SUCCESS)
    return {"stepped_up": True}, 200


#: The config key of the one-time demo sign-in token (``make serve`` sets it).
DEMO_LOGIN_TOKEN = "DEMO_LOGIN_TOKEN"


def init_demo_login(app: Flask) -> None:
    """Add ``GET /auth/demo-login?token=...`` when ``DEMO_LOGIN_TOKEN`` is set.

    It signs the local browser in as the seeded admin, stepped up, and
    opens the dashboard: the link ``make serve`` prints. The token works
    once, only from the loopback address, and without the setting the
    route does not exist.
    """
    if app.config.get(DEMO_LOGIN_TOKEN):
        app.add_url_rule("/auth/demo-login", "demo_login", demo_login)


def demo_login() -> Response:
    token = current_app.config.get(DEMO_LOGIN_TOKEN)
    given = request.args.get("token", "")
    if not _loopback(request.remote_addr) or not token:
        abort(404)
    if not hmac.compare_digest(given.encode(), str(token).encode()):
        abort(404)
    admin = db.session.scalar(db.select(User).filter_by(is_admin=True))
    if admin is None:
        abort(404)
    current_app.config[DEMO_LOGIN_TOKEN] = None  # one time only
    session.clear()
    session["user_id"] = admin.id
    session["stepped_up"] = True
    g.user = admin
    telemetry.record(EventType.AUTH_LOGIN_SUCCESS)
    return redirect(url_for("telemetry_dashboard.overview"))


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@bp.post("/logout")
def logout() -> tuple[dict[str, t.Any], int]:
    session.clear()
    return {"signed_out": True}, 200
