"""A pool of telemetry's own on the application's database.

Telemetry writes from one thread at a time (the writer thread of the
delivery). Taking that connection from the application's pool would make
telemetry wait behind the application's sessions when the pool is
exhausted, and make them wait behind telemetry; so the writer gets a pool of
its own, made from the application's (same connection factory, same
``connect`` events, pre-ping and recycle), holding one connection and
opening one more at most.
"""

from __future__ import annotations

import sqlalchemy as sa


def own_pool_engine(engine: sa.Engine, *, timeout: float) -> sa.Engine:
    """An engine on ``engine``'s database with a small pool of its own.

    Only for a :class:`~sqlalchemy.pool.QueuePool` (the default for a
    server or an SQLite file): other pools (``NullPool``, the single
    connection of an in-memory SQLite database) are returned as they are.
    ``timeout`` bounds a wait for the pool's connection. Dispose of the
    returned engine when done with it (unless it is ``engine``).
    """
    pool = engine.pool
    if type(pool) is not sa.pool.QueuePool:
        return engine
    own = sa.pool.QueuePool(
        pool._creator,
        pool_size=1,
        max_overflow=1,
        timeout=timeout,
        recycle=pool._recycle,
        pre_ping=pool._pre_ping,
        reset_on_return=pool._reset_on_return,
        dialect=pool._dialect,
        _dispatch=pool.dispatch,
    )
    return sa.create_engine(engine.url, pool=own)
