"""HTTP layer: reads the request and the response, and delegates to the domain.

No persistence and no policy here: the request context, the request id and
``traceparent`` headers, the route rules and the hooks.

:meta private: internal; the public names are exported by ``flask_telemetry``.
"""

__all__: list[str] = []
