"""Request ids: accept a well-formed incoming one, otherwise make one."""

from __future__ import annotations

from ..domain.correlation import REQUEST_ID_PATTERN, new_request_id

_valid = REQUEST_ID_PATTERN.fullmatch


def resolve_request_id(incoming: str | None, fallback: str | None = None) -> str:
    """Return ``incoming`` when it is a safe id, else ``fallback``, else a new UUID4.

    Anything else (too long, spaces, newlines, quotes, non-ASCII) is replaced,
    never cleaned up, so a hostile header cannot shape the stored value.
    """
    if incoming and _valid(incoming):
        return incoming
    return fallback or new_request_id()
