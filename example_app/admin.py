"""Admin changes: requires a signed-in admin who passed the step-up check."""

from __future__ import annotations

import typing as t

from flask import Blueprint, abort, g, request, session

from flask_telemetry import ActorType, EventType

from . import catalogue, jobs
from .extensions import db, telemetry
from .models import Product

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def require_stepped_up_admin() -> None:
    if g.user is None or not g.user.is_admin:
        abort(403)
    if not session.get("stepped_up"):
        abort(401)


@bp.post("/products/<int:product_id>/price")
def set_price(product_id: int) -> dict[str, t.Any]:
    product = db.session.get(Product, product_id)
    if product is None:
        abort(404)
    data = request.get_json(silent=True) or {}
    new_price = data.get("price_cents")
    if not isinstance(new_price, int) or new_price < 0:
        abort(400)
    old_price = product.price_cents
    product.price_cents = new_price
    db.session.commit()
    catalogue.forget(product_id)
    telemetry.record(
        EventType.RESOURCE_MUTATION,
        actor_type=ActorType.ADMIN,
        actor_id=g.user.id,
        metadata={
            "resource": "product",
            "id": product_id,
            "field": "price_cents",
            "old": old_price,
            "new": new_price,
        },
    )
    jobs.enqueue(jobs.announce_price, product_id)
    return {"id": product_id, "price_cents": new_price}
