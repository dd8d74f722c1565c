"""Who acted."""

from __future__ import annotations

import enum


class ActorType(str, enum.Enum):
    """The kind of actor behind an event. The value is what the database stores."""

    #: A request with no known user.
    ANONYMOUS = "anonymous"
    #: A signed-in user.
    USER = "user"
    #: A signed-in administrator.
    ADMIN = "admin"
    #: Another service calling this one.
    SERVICE = "service"
    #: The application itself: CLI commands, workers, code outside a request.
    SYSTEM = "system"
