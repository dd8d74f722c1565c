"""Sign-in and step-up (second factor); records the ``auth_*`` events."""

from __future__ import annotations

import typing as t

from flask import Blueprint, abort, g, request, session

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


@bp.post("/logout")
def logout() -> tuple[dict[str, t.Any], int]:
    session.clear()
    return {"signed_out": True}, 200
