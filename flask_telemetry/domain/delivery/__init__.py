"""Delivery: how a checked event reaches the writer.

``protocol`` (what a delivery is, and the one fork guard), ``sync`` (stored
before ``record()`` returns), ``background`` (the ``"async"`` setting: a
bounded queue and one writer thread per process), ``batch`` (validation,
INSERT and the isolation of bad rows), ``breaker`` and ``stats``.

:meta private: internal.
"""

__all__: list[str] = []
