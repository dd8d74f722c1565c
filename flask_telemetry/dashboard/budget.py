"""A time limit on the dashboard's queries, set the way each database can.

A page over a window too large for the database answers quickly with a
message instead of holding a worker (and the database) for minutes: the
queries of a page share a deadline :data:`PAGE_SECONDS` away, each query is
stopped by the database when it passes, and an error after the deadline is
:class:`TooSlow`.

- PostgreSQL: ``SET LOCAL statement_timeout`` in the query's transaction.
- MariaDB: ``max_statement_time``, MySQL: ``max_execution_time``, for the
  session, restored before the connection goes back to the pool.
- SQLite: a progress handler that interrupts the statement after the deadline.

The deadline belongs to the request (:func:`start`, :func:`deadline`): it is
kept in the request's WSGI environ, never in ``g``, which an application
context held around several requests (a test fixture) shares between them.
"""

from __future__ import annotations

import contextlib
import time
import typing as t

import sqlalchemy as sa
from flask import request

#: How long the queries of one dashboard page may take together, in seconds.
PAGE_SECONDS = 10.0


_DEADLINE = "flask_telemetry.dashboard.deadline"


def start() -> None:
    """Start the current request's budget: :data:`PAGE_SECONDS` from now."""
    request.environ[_DEADLINE] = time.monotonic() + PAGE_SECONDS


def deadline() -> float:
    """When the current request's budget runs out (``time.monotonic()``),
    started by the first call when :func:`start` was not called."""
    value: float = request.environ.setdefault(
        _DEADLINE, time.monotonic() + PAGE_SECONDS
    )
    return value


class TooSlow(Exception):
    """The queries of a page ran out of their time."""

    def __init__(self) -> None:
        super().__init__(
            f"The queries of this page needed more than {PAGE_SECONDS:g} s "
            "and were stopped."
        )


@contextlib.contextmanager
def limited(conn: sa.Connection, seconds: float) -> t.Iterator[None]:
    """Run the block's queries on ``conn`` with a time limit of ``seconds``."""
    if seconds <= 0:
        raise TooSlow
    seconds = max(seconds, 0.001)
    deadline = time.monotonic() + seconds
    name = conn.dialect.name
    restore: str | None = None
    driver = conn.connection.driver_connection
    if name == "postgresql":
        conn.exec_driver_sql(
            f"SET LOCAL statement_timeout = {max(int(seconds * 1000), 1)}"
        )
    elif name in ("mysql", "mariadb"):
        if getattr(conn.dialect, "is_mariadb", False):
            variable, value = "max_statement_time", f"{seconds:.3f}"
        else:
            variable, value = "max_execution_time", str(max(int(seconds * 1000), 1))
        restore = f"SET SESSION {variable} = @@GLOBAL.{variable}"
        conn.exec_driver_sql(f"SET SESSION {variable} = {value}")
    elif name == "sqlite":
        driver.set_progress_handler(  # type: ignore[union-attr]
            lambda: time.monotonic() > deadline, 10_000
        )
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if time.monotonic() >= deadline - 0.05:
            raise TooSlow from exc
        raise
    finally:
        if name == "sqlite":
            driver.set_progress_handler(None, 0)  # type: ignore[union-attr]
        elif restore is not None:
            try:
                conn.exec_driver_sql(restore)
            except sa.exc.DBAPIError:
                # Never hand a connection with the limit back to the pool.
                conn.invalidate()
