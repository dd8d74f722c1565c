"""A small application: prices behind a cache, with telemetry on cache lookups."""

from __future__ import annotations

import typing as t

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import EventType, Telemetry

db = SQLAlchemy()
telemetry = Telemetry()


def create_app(**config: t.Any) -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///shop.db"
    app.config.update(config)
    db.init_app(app)
    telemetry.init_app(app)
    cache: dict[str, str] = {}

    @app.get("/price/<sku>")
    def price(sku: str) -> str:
        if sku in cache:
            telemetry.record(EventType.CACHE_HIT, "debug", metadata={"key": sku})
        else:
            telemetry.record(EventType.CACHE_MISS, metadata={"key": sku})
            cache[sku] = "9.99"
        return cache[sku]

    return app
