"""Configuration: every ``TELEMETRY_*`` key declared once.

Each attribute of :class:`ConfigVars` is a :class:`Key`: the key's name (it
is a ``str``, to use as the key of ``app.config``), its default, the check
that validates it and names it in its error, a one-line description, and the
:class:`Settings` field it fills (the attribute's own name). ``DEFAULTS``,
``Settings`` and the configuration reference in the docs are derived from
them. Adding a key is one :class:`Key` on :class:`ConfigVars`, then the code
that reads it (``settings.THE_NAME``).

``Settings`` is generated at import time (``dataclasses.make_dataclass``: a
frozen, slotted dataclass, one field per key), so that reading a setting is a
plain attribute read. For the type checker, ``Settings`` is
:class:`ConfigVars` itself: a :class:`Key` is typed as a descriptor whose
value on an instance is what its check returns (``Key[int]`` gives an
``int``), so ``settings.RETENTION_DAYS`` is an ``int`` to mypy with no second
list of fields to keep aligned.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import hmac
import os
import re
import types
import typing as t

from .domain.privacy import DEFAULT_REDACT_KEYS, IP_MODES

Config = t.Mapping[str, t.Any]
Check = t.Callable[[Config, "Key[t.Any]"], t.Any]
T = t.TypeVar("T", covariant=True)


class Key(str, t.Generic[T]):
    """The name of a configuration key, with its default, check, doc and the
    :class:`Settings` field it fills (``attr``, the name it is declared under
    on :class:`ConfigVars`). ``secret`` keeps its value out of ``repr()``."""

    default: t.Any
    check: Check
    doc: str
    secret: bool
    attr: str

    def __new__(
        cls, name: str, default: t.Any, check: Check, doc: str, *, secret: bool = False
    ) -> Key[T]:
        key = super().__new__(cls, name)
        key.default = default
        key.check = check
        key.doc = doc
        key.secret = secret
        return key

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    def load(self, config: Config) -> T:
        """The validated value of this key in ``config``."""
        return t.cast(T, self.check(config, self))

    if t.TYPE_CHECKING:
        # Only for the type checker: on the class a Key is itself, on a
        # Settings instance it is the value (see the module docstring).

        @t.overload
        def __get__(self, obj: None, owner: type) -> Key[T]: ...
        @t.overload
        def __get__(self, obj: object, owner: type) -> T: ...
        def __get__(self, obj: object, owner: type) -> Key[T] | T: ...


# -- checks: each returns the value to keep or raises ValueError naming the key


def boolean(config: Config, key: Key[t.Any]) -> bool:
    value = config[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be True or False, not {value!r}.")
    return value


def number(*, integer: bool = False, minimum: float = 0) -> Check:
    def check(config: Config, key: Key[t.Any]) -> t.Any:
        value = config[key]
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:  # type: ignore[operator]
            kind = "an integer" if integer else "a number"
            raise ValueError(f"{key} must be {kind} >= {minimum}, not {value!r}.")
        return value

    return check


def one_of(*values: t.Any) -> Check:
    def check(config: Config, key: Key[t.Any]) -> t.Any:
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

    def checked(config: Config, key: Key[t.Any]) -> t.Any:
        return None if config[key] is None else check(config, key)

    return checked


def strings(config: Config, key: Key[t.Any]) -> tuple[str, ...]:
    value = config[key]
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{key} must be a list of strings, not {value!r}.")
    if not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key} must hold non-empty strings only, not {value!r}.")
    return tuple(value)


def _bind_key(config: Config, key: Key[t.Any]) -> str | None:
    value = config[key]
    binds = config.get("SQLALCHEMY_BINDS") or {}
    if value is not None and value not in binds:
        raise ValueError(
            f"{key} is {value!r}, which is not a key of "
            f"SQLALCHEMY_BINDS ({sorted(binds)})."
        )
    return t.cast("str | None", value)


_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def _header(config: Config, key: Key[t.Any]) -> str:
    value = config[key]
    if not isinstance(value, str) or not _HEADER.fullmatch(value):
        raise ValueError(f"{key} must be an HTTP header name, not {value!r}.")
    return value


def _exclude(config: Config, key: Key[t.Any]) -> tuple[str, ...]:
    selectors = strings(config, key)
    for selector in selectors:
        if selector.startswith("/") and "*" in selector[:-1]:
            raise ValueError(
                f"{key}: a path prefix may only end with '*', not {selector!r}."
            )
    return selectors


def _slow_by_endpoint(config: Config, key: Key[t.Any]) -> t.Mapping[str, float]:
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


def _release(config: Config, key: Key[t.Any]) -> str | None:
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


def _retention_levels(config: Config, key: Key[t.Any]) -> tuple[float, float, float]:
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


def _rate(config: Config, key: Key[t.Any]) -> float:
    value = config[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (0 <= value <= 1)
    ):
        raise ValueError(f"{key} must be a number from 0.0 to 1.0, not {value!r}.")
    return float(value)


def _status(config: Config, key: Key[t.Any]) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 600:
        raise ValueError(
            f"{key} must be an HTTP status from 100 to 600 (600 keeps no status), "
            f"not {value!r}."
        )
    return value


def _secret(config: Config, key: Key[t.Any]) -> bytes | None:
    value = config[key]
    if value is not None and not (isinstance(value, (str, bytes)) and value):
        raise ValueError(f"{key} must be a non-empty str or bytes, or None.")
    return value.encode() if isinstance(value, str) else value


#: Requests telemetry ignores by default: static files and health checks.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "static",
    "*.static",
    "/health",
    "/healthz",
    "/livez",
    "/readyz",
)


class ConfigVars:
    """Every ``TELEMETRY_*`` configuration key, in documentation order.

    Each is a ``str`` (use it as the key of ``app.config``) and a
    :class:`Key` that knows its default, its check and its description.
    """

    ENABLED = Key[bool]("TELEMETRY_ENABLED", True, boolean, "Record anything at all.")
    DELIVERY = Key[t.Literal["sync", "async"]](
        "TELEMETRY_DELIVERY",
        "async",
        one_of("sync", "async"),
        "How events reach the database: a writer thread, or before record() returns.",
    )
    BIND_KEY = Key[str | None](
        "TELEMETRY_BIND_KEY", None, _bind_key, "The bind holding the table."
    )
    RECORD_REQUESTS = Key[bool](
        "TELEMETRY_RECORD_REQUESTS",
        True,
        boolean,
        "Record http_request_end for every request.",
    )
    SLOW_REQUEST_MS = Key[float](
        "TELEMETRY_SLOW_REQUEST_MS", 1000, number(), "When a request is slow."
    )
    REQUEST_ID_HEADER = Key[str](
        "TELEMETRY_REQUEST_ID_HEADER",
        "X-Request-ID",
        _header,
        "The header carrying the request id.",
    )
    STRICT = Key[bool]("TELEMETRY_STRICT", False, boolean, "Raise on bad arguments.")
    RETENTION_DAYS = Key[int](
        "TELEMETRY_RETENTION_DAYS",
        7,
        number(integer=True, minimum=1),
        "Days of events to keep.",
    )
    QUEUE_SIZE = Key[int](
        "TELEMETRY_QUEUE_SIZE",
        10_000,
        number(integer=True, minimum=1),
        "Events queued per process.",
    )
    QUEUE_MAX_BYTES = Key[int](
        "TELEMETRY_QUEUE_MAX_BYTES",
        16 * 1024 * 1024,
        number(integer=True, minimum=65536),
        "Memory the queued events may hold per process, in bytes (an estimate).",
    )
    SYNC_DEADLINE_MS = Key[int](
        "TELEMETRY_SYNC_DEADLINE_MS",
        1000,
        number(integer=True, minimum=1),
        "Longest a sync record() waits for its event to be stored.",
    )
    BATCH_SIZE = Key[int](
        "TELEMETRY_BATCH_SIZE",
        500,
        number(integer=True, minimum=1),
        "Events per transaction.",
    )
    FLUSH_INTERVAL = Key[float](
        "TELEMETRY_FLUSH_INTERVAL",
        0.5,
        number(minimum=0.001),
        "Seconds between writes.",
    )
    SHUTDOWN_TIMEOUT = Key[float](
        "TELEMETRY_SHUTDOWN_TIMEOUT", 5.0, number(), "Seconds to flush at exit."
    )
    IDLE_DISCONNECT_S = Key[float | None](
        "TELEMETRY_IDLE_DISCONNECT_S",
        5.0,
        optional(number(minimum=0.001)),
        "Seconds without a write after which the writer closes its connection.",
    )
    LOCK_TIMEOUT_MS = Key[int](
        "TELEMETRY_LOCK_TIMEOUT_MS",
        500,
        number(integer=True, minimum=1),
        "Lock wait of one insert.",
    )
    CONNECT_TIMEOUT_MS = Key[int](
        "TELEMETRY_CONNECT_TIMEOUT_MS",
        2000,
        number(integer=True, minimum=1),
        "Connect timeout of telemetry's own bind.",
    )
    STATEMENT_TIMEOUT_MS = Key[int](
        "TELEMETRY_STATEMENT_TIMEOUT_MS",
        2000,
        number(integer=True, minimum=1),
        "Run time of one insert.",
    )
    DURABLE_COMMIT = Key[bool](
        "TELEMETRY_DURABLE_COMMIT",
        True,
        boolean,
        "Wait for the WAL flush on PostgreSQL.",
    )
    MAX_RETRIES = Key[int](
        "TELEMETRY_MAX_RETRIES",
        3,
        number(integer=True),
        "Retries of a failed batch.",
    )
    RETRY_BACKOFF = Key[float](
        "TELEMETRY_RETRY_BACKOFF", 0.2, number(), "Seconds before the first retry."
    )
    BREAKER_THRESHOLD = Key[int](
        "TELEMETRY_BREAKER_THRESHOLD",
        5,
        number(integer=True, minimum=1),
        "Failures that open the breaker.",
    )
    BREAKER_COOLDOWN = Key[float](
        "TELEMETRY_BREAKER_COOLDOWN",
        10.0,
        number(),
        "Seconds the breaker stays open.",
    )
    # Correlation, sampling and privacy.
    TRACEPARENT = Key[bool](
        "TELEMETRY_TRACEPARENT", True, boolean, "Read the W3C traceparent header."
    )
    EXCLUDE = Key[tuple[str, ...]](
        "TELEMETRY_EXCLUDE", DEFAULT_EXCLUDE, _exclude, "Requests to ignore."
    )
    SLOW_REQUEST_MS_BY_ENDPOINT = Key[t.Mapping[str, float]](
        "TELEMETRY_SLOW_REQUEST_MS_BY_ENDPOINT",
        types.MappingProxyType({}),
        _slow_by_endpoint,
        "Slow thresholds per endpoint.",
    )
    SAMPLE_RATE = Key[float](
        "TELEMETRY_SAMPLE_RATE", 1.0, _rate, "Share of routine requests kept."
    )
    SAMPLE_KEEP_STATUS = Key[int](
        "TELEMETRY_SAMPLE_KEEP_STATUS",
        400,
        _status,
        "Statuses never sampled out.",
    )
    REDACT_KEYS = Key[tuple[str, ...]](
        "TELEMETRY_REDACT_KEYS",
        DEFAULT_REDACT_KEYS,
        strings,
        "Metadata keys whose values are redacted.",
    )
    METADATA_MAX_BYTES = Key[int](
        "TELEMETRY_METADATA_MAX_BYTES",
        8192,
        number(integer=True, minimum=256),
        "Largest metadata stored.",
    )
    IP_MODE = Key[str](
        "TELEMETRY_IP_MODE", "full", one_of(*IP_MODES), "How addresses are stored."
    )
    IP_HASH_KEY = Key[bytes | None](
        "TELEMETRY_IP_HASH_KEY",
        None,
        _secret,
        "Secret of the address hash.",
        secret=True,
    )
    # Rollups and releases.
    ROLLUPS = Key[bool](
        "TELEMETRY_ROLLUPS",
        False,
        boolean,
        "Fold request ends into ``telemetry_rollups`` (:doc:`rollups`): exact "
        "figures for any window, kept past the raw retention.",
    )
    ROLLUP_GRACE_S = Key[float](
        "TELEMETRY_ROLLUP_GRACE_S",
        300,
        number(),
        "Seconds a request end may arrive late and still be folded by the "
        "next regular rollup.",
    )
    ROLLUP_RETENTION_DAYS = Key[tuple[float, float, float]](
        "TELEMETRY_ROLLUP_RETENTION_DAYS",
        (2, 35, 400),
        _retention_levels,
        "Days the minute, hour and day buckets are kept.",
    )
    RELEASE = Key[str | None](
        "TELEMETRY_RELEASE",
        None,
        _release,
        "The release (version or commit) kept on each request end; unset, read "
        "from the environment: ``TELEMETRY_RELEASE``, ``SENTRY_RELEASE``, "
        "``SOURCE_VERSION``, ``HEROKU_SLUG_COMMIT``, ``GIT_COMMIT``.",
    )
    # Integrations.
    SLOW_QUERY_MS = Key[float | None](
        "TELEMETRY_SLOW_QUERY_MS",
        None,
        optional(number()),
        "With the SQLAlchemy integration enabled (:doc:`integrations/sqlalchemy`), "
        "statements slower than this, in milliseconds, are recorded as "
        "``db_query_slow``; ``None`` times no statement.",
    )
    N_PLUS_ONE_THRESHOLD = Key[int](
        "TELEMETRY_N_PLUS_ONE_THRESHOLD",
        10,
        number(integer=True),
        "With the SQLAlchemy integration enabled, one statement shape run this "
        "many times in one request or job records one ``db_n_plus_one``; ``0`` "
        "turns the detection off.",
    )
    QUERY_PROFILE_RATE = Key[float](
        "TELEMETRY_QUERY_PROFILE_RATE",
        0.0,
        _rate,
        "With the SQLAlchemy integration enabled, the share of requests whose "
        "statements (shape, start and duration) are kept as one "
        "``db_query_profile`` event, drawn on the trace page.",
    )


#: Every key, in documentation order.
KEYS: tuple[Key[t.Any], ...] = tuple(
    v for v in vars(ConfigVars).values() if isinstance(v, Key)
)

#: Every key with its default, in documentation order.
DEFAULTS: dict[str, t.Any] = {str(k): k.default for k in KEYS}


if t.TYPE_CHECKING:
    # One field per key, typed by its Key (see the module docstring).
    Settings = ConfigVars
else:
    Settings = dataclasses.make_dataclass(
        "Settings",
        [
            (k.attr, t.Any, dataclasses.field(repr=not k.secret))  # type: ignore[misc]
            for k in KEYS
        ],
        frozen=True,
        kw_only=True,
        slots=True,
    )
    Settings.__module__ = __name__
    Settings.__doc__ = (
        "The validated configuration of one application: one field per key, "
        "named as on ConfigVars."
    )


def load_settings(config: Config) -> Settings:
    """Validate ``config`` (defaults already set); raise ValueError naming the key."""
    values = {key.attr: key.load(config) for key in KEYS}
    if values["IP_MODE"] == "hash" and values["IP_HASH_KEY"] is None:
        values["IP_HASH_KEY"] = _derived_secret(config)
    settings: Settings = t.cast(t.Any, Settings)(**values)  # the generated class
    return settings


def _derived_secret(config: Config) -> bytes:
    app_secret = config.get("SECRET_KEY") or None
    if not isinstance(app_secret, (str, bytes)):
        raise ValueError(
            f"{ConfigVars.IP_MODE} = 'hash' needs a secret: set "
            f"{ConfigVars.IP_HASH_KEY} (or the app's SECRET_KEY)."
        )
    # A key of its own, derived from SECRET_KEY: hashes made with it reveal
    # nothing about the application's signing key.
    raw = app_secret.encode() if isinstance(app_secret, str) else app_secret
    return hmac.new(raw, b"flask_telemetry.ip_hash", hashlib.sha256).digest()


def unknown_keys(config: Config) -> list[tuple[str, str | None]]:
    """``TELEMETRY_*`` keys of ``config`` that are not settings, each with the
    closest valid name (or None)."""
    found = []
    for name in config:
        if name.startswith("TELEMETRY_") and name not in DEFAULTS:
            close = difflib.get_close_matches(name, DEFAULTS, n=1, cutoff=0.6)
            found.append((name, close[0] if close else None))
    return found
