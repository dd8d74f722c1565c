"""The checks of the configuration keys (:mod:`flask_telemetry._config`).

Each takes the configuration and the key's name, and returns the value to
keep or raises ValueError naming the key.
"""

from __future__ import annotations

import os
import re
import types
import typing as t

Config = t.Mapping[str, t.Any]
Check = t.Callable[[Config, str], t.Any]


def boolean(config: Config, key: str) -> bool:
    value = config[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be True or False, not {value!r}.")
    return value


def number(*, integer: bool = False, minimum: float = 0) -> Check:
    def check(config: Config, key: str) -> t.Any:
        value = config[key]
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:  # type: ignore[operator]
            kind = "an integer" if integer else "a number"
            raise ValueError(f"{key} must be {kind} >= {minimum}, not {value!r}.")
        return value

    return check


def one_of(*values: t.Any) -> Check:
    def check(config: Config, key: str) -> t.Any:
        value = config[key]
        if value not in values:
            shown = "one of " + ", ".join(map(repr, values))
            if len(values) == 2:
                shown = f"{values[0]!r} or {values[1]!r}"
            raise ValueError(f"{key} must be {shown}, not {value!r}.")
        return value

    return check


def optional(check: Check) -> Check:
    """``check``, or None when the value is None."""

    def checked(config: Config, key: str) -> t.Any:
        return None if config[key] is None else check(config, key)

    return checked


def strings(config: Config, key: str) -> tuple[str, ...]:
    value = config[key]
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{key} must be a list of strings, not {value!r}.")
    if not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key} must hold non-empty strings only, not {value!r}.")
    return tuple(value)


def bind_key(config: Config, key: str) -> str | None:
    value = config[key]
    binds = config.get("SQLALCHEMY_BINDS") or {}
    if value is not None and value not in binds:
        raise ValueError(
            f"{key} is {value!r}, which is not a key of "
            f"SQLALCHEMY_BINDS ({sorted(binds)})."
        )
    return t.cast("str | None", value)


_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def header_name(config: Config, key: str) -> str:
    value = config[key]
    if not isinstance(value, str) or not _HEADER.fullmatch(value):
        raise ValueError(f"{key} must be an HTTP header name, not {value!r}.")
    return value


def selectors(config: Config, key: str) -> tuple[str, ...]:
    selectors = strings(config, key)
    for selector in selectors:
        if selector.startswith("/") and "*" in selector[:-1]:
            raise ValueError(
                f"{key}: a path prefix may only end with '*', not {selector!r}."
            )
    return selectors


def ms_by_endpoint(config: Config, key: str) -> t.Mapping[str, float]:
    value = config[key]
    if not isinstance(value, t.Mapping) or not all(
        isinstance(k, str)
        and k
        and not isinstance(v, bool)
        and isinstance(v, (int, float))
        and v >= 0
        for k, v in value.items()
    ):
        raise ValueError(
            f"{key} must map endpoint names (or patterns such as 'admin.*') to "
            f"milliseconds >= 0, not {value!r}."
        )
    return types.MappingProxyType(dict(value))


#: Where the release is read from when TELEMETRY_RELEASE is unset: the
#: environment variables deploy tools set, first found wins.
RELEASE_ENVIRON = (
    "TELEMETRY_RELEASE",
    "SENTRY_RELEASE",
    "SOURCE_VERSION",
    "HEROKU_SLUG_COMMIT",
    "GIT_COMMIT",
)


def release_name(config: Config, key: str) -> str | None:
    value = config[key]
    if value is None:
        value = next(
            (os.environ[n] for n in RELEASE_ENVIRON if os.environ.get(n)), None
        )
        if value is None:
            return None
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise ValueError(
            f"{key} must be a text of 1 to 64 characters (a version or a commit), "
            f"not {value!r}."
        )
    if not value.isprintable():
        raise ValueError(f"{key} must hold printable characters only, not {value!r}.")
    return value.strip()


def retention_levels(config: Config, key: str) -> tuple[float, float, float]:
    value = config[key]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            for v in value
        )
        or not value[0] <= value[1] <= value[2]
    ):
        raise ValueError(
            f"{key} must be three numbers of days, for the minute, hour and day "
            f"buckets, each at least the one before (such as (2, 35, 400)), not "
            f"{value!r}."
        )
    return (float(value[0]), float(value[1]), float(value[2]))


def rate(config: Config, key: str) -> float:
    value = config[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (0 <= value <= 1)
    ):
        raise ValueError(f"{key} must be a number from 0.0 to 1.0, not {value!r}.")
    return float(value)


def http_status(config: Config, key: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 600:
        raise ValueError(
            f"{key} must be an HTTP status from 100 to 600 (600 keeps no status), "
            f"not {value!r}."
        )
    return value


def secret_bytes(config: Config, key: str) -> bytes | None:
    value = config[key]
    if value is not None and not (isinstance(value, (str, bytes)) and value):
        raise ValueError(f"{key} must be a non-empty str or bytes, or None.")
    return value.encode() if isinstance(value, str) else value
