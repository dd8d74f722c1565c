"""A logging filter that puts the request id on log records."""

from __future__ import annotations

import logging

from .correlation import current_ids


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` and ``trace_id`` attributes to every log record.

    The ids are those of the current request, or of the correlation activated
    with ``Correlation.activate()`` in a thread or job; ``default`` otherwise.
    A record that already has the attribute (``extra={"request_id": ...}``)
    keeps it. Attach it to a handler so that every logger's records get it::

        handler = logging.StreamHandler()
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    """

    def __init__(self, name: str = "", *, default: str = "-") -> None:
        super().__init__(name)
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        """Set the attributes; the record is always kept (unless ``name`` says no)."""
        try:
            request_id, trace_id = current_ids()
        except Exception:  # never break logging
            request_id = trace_id = None
        if not hasattr(record, "request_id"):
            record.request_id = request_id or self.default
        if not hasattr(record, "trace_id"):
            record.trace_id = trace_id or self.default
        return super().filter(record)
