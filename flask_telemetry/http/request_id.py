"""Request ids: accept a well-formed incoming one, otherwise make one."""

from __future__ import annotations

import re
import uuid

#: What an incoming request id may look like: 1-64 safe characters.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def resolve_request_id(incoming: str | None) -> str:
    """Return ``incoming`` when it is a safe id, else a new UUID4 string.

    Anything else (too long, spaces, newlines, quotes, non-ASCII) is replaced,
    never cleaned up, so a hostile header cannot shape the stored value.
    """
    if incoming and REQUEST_ID_PATTERN.fullmatch(incoming):
        return incoming
    return str(uuid.uuid4())
