"""Storage layer: the vocabulary, the row, its schema, the model, the writer.

It knows nothing of Flask requests or of the domain. Every failure to store
raises :class:`~flask_telemetry.exceptions.TelemetryStorageException`.

:meta private: internal; the public names are exported by ``flask_telemetry``.
"""

__all__: list[str] = []
