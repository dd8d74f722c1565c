"""Public product pages behind a small in-process cache."""

from __future__ import annotations

import typing as t

from flask import Blueprint, abort

from flask_telemetry import EventType, Severity

from .extensions import db, telemetry
from .models import Product

bp = Blueprint("catalogue", __name__, url_prefix="/products")

_cache: dict[int, dict[str, t.Any]] = {}


def forget(product_id: int) -> None:
    """Drop a product from the cache after a change."""
    _cache.pop(product_id, None)


@bp.get("/<int:product_id>")
def show(product_id: int) -> dict[str, t.Any]:
    cached = _cache.get(product_id)
    if cached is not None:
        telemetry.record(
            EventType.CACHE_HIT, Severity.DEBUG, metadata={"cache": "product"}
        )
        return cached
    telemetry.record(EventType.CACHE_MISS, metadata={"cache": "product"})
    product = db.session.get(Product, product_id)
    if product is None:
        abort(404)
    _cache[product_id] = body = {
        "id": product.id,
        "name": product.name,
        "price_cents": product.price_cents,
    }
    return body
