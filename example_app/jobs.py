"""Background jobs on RQ, recorded under the request that enqueued them.

With ``REDIS_URL`` set, a price change enqueues :func:`announce_price` on the
``example`` queue; start a worker with the app's context to run it::

    REDIS_URL=redis://127.0.0.1:6379/0 FLASK_APP=example_app:create_app \
        rq worker --url redis://127.0.0.1:6379/0 \
        --worker-class flask_telemetry.integrations.rq.Worker example

The worker records ``worker_job_end`` (or ``worker_job_fail``) with the id of
the admin's request. Without ``REDIS_URL`` nothing is enqueued.
"""

from __future__ import annotations

import os
import typing as t

import redis
import rq
from flask import Flask, current_app

from flask_telemetry.integrations import rq as telemetry_rq

from .extensions import db, telemetry
from .models import Product


def init_app(app: Flask) -> None:
    """Read the Redis settings and carry request ids into jobs."""
    app.config.setdefault("REDIS_URL", os.environ.get("REDIS_URL"))
    app.config.setdefault("RQ_QUEUE", "example")
    telemetry_rq.instrument(None, telemetry)


def enqueue(func: t.Callable[..., t.Any], *args: t.Any) -> str | None:
    """Enqueue ``func(*args)``; the job id, or None when Redis is off or down."""
    url = current_app.config["REDIS_URL"]
    if not url:
        return None
    connection = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        queue = rq.Queue(current_app.config["RQ_QUEUE"], connection=connection)
        return queue.enqueue(func, *args).id
    except redis.RedisError:
        current_app.logger.warning("Could not enqueue %s", func.__name__)
        return None
    finally:
        connection.close()


def announce_price(product_id: int) -> None:
    """Tell watchers about a new price (here: the log)."""
    product = db.session.get(Product, product_id)
    if product is not None:
        current_app.logger.info(
            "%s now costs %d cents", product.name, product.price_cents
        )
