"""W3C Trace Context: reading the ``traceparent`` header.

https://www.w3.org/TR/trace-context/#traceparent-header
"""

from __future__ import annotations

import re

#: The environ key of the ``traceparent`` header.
TRACEPARENT_ENVIRON = "HTTP_TRACEPARENT"

_HEADER = re.compile(
    r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})"
    r"(-[^\x00-\x1f]*)?[ \t]*"
)
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """Return ``(trace_id, parent_id)`` of a valid header, else None.

    Follows the specification's rules: lower-case hex only, version ``ff``
    is invalid, version ``00`` has exactly four fields, an all-zero trace or
    parent id is invalid. Later versions may append fields, which are
    ignored. A malformed header is ignored as a whole, never repaired.
    """
    if not value or len(value) > 512:
        return None
    match = _HEADER.fullmatch(value)
    if match is None:
        return None
    version, trace_id, parent_id, _, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    return trace_id, parent_id
