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
import types
import typing as t

from ._checks import (
    Check,
    Config,
    bind_key,
    boolean,
    header_name,
    http_status,
    ms_by_endpoint,
    number,
    one_of,
    optional,
    rate,
    release_name,
    retention_levels,
    secret_bytes,
    selectors,
    strings,
)
from .domain.privacy import DEFAULT_REDACT_KEYS, IP_MODES

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

    Each is a ``str`` (use it as the key of ``app.config``) and a ``Key``
    that knows its default, its check and its description.
    """

    ENABLED = Key[bool]("TELEMETRY_ENABLED", True, boolean, "Record anything at all.")
    DELIVERY = Key[t.Literal["sync", "async"]](
        "TELEMETRY_DELIVERY",
        "async",
        one_of("sync", "async"),
        "How events reach the database: a writer thread, or before record() returns.",
    )
    BIND_KEY = Key[str | None](
        "TELEMETRY_BIND_KEY", None, bind_key, "The bind holding the table."
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
        header_name,
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
        "TELEMETRY_EXCLUDE", DEFAULT_EXCLUDE, selectors, "Requests to ignore."
    )
    SLOW_REQUEST_MS_BY_ENDPOINT = Key[t.Mapping[str, float]](
        "TELEMETRY_SLOW_REQUEST_MS_BY_ENDPOINT",
        types.MappingProxyType({}),
        ms_by_endpoint,
        "Slow thresholds per endpoint.",
    )
    SAMPLE_RATE = Key[float](
        "TELEMETRY_SAMPLE_RATE", 1.0, rate, "Share of routine requests kept."
    )
    SAMPLE_KEEP_STATUS = Key[int](
        "TELEMETRY_SAMPLE_KEEP_STATUS",
        400,
        http_status,
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
        secret_bytes,
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
        retention_levels,
        "Days the minute, hour and day buckets are kept.",
    )
    RELEASE = Key[str | None](
        "TELEMETRY_RELEASE",
        None,
        release_name,
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
        rate,
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
