"""Domain layer: intent, request-end policy, privacy, mapping to the storage
DTO, best-effort recording and delivery.

It imports no Flask. Storage failures stop here: they are counted and
logged, never raised to the caller.

:meta private: internal; the public names are exported by ``flask_telemetry``.
"""

__all__: list[str] = []
