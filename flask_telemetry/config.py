"""Configuration keys, their defaults, and their validation."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import types
import typing as t

from .domain.privacy import DEFAULT_REDACT_KEYS, IP_MODES


class ConfigVars:
    """Names of every ``TELEMETRY_*`` configuration key."""

    ENABLED = "TELEMETRY_ENABLED"
    DELIVERY = "TELEMETRY_DELIVERY"
    BIND_KEY = "TELEMETRY_BIND_KEY"
    RECORD_REQUESTS = "TELEMETRY_RECORD_REQUESTS"
    SLOW_REQUEST_MS = "TELEMETRY_SLOW_REQUEST_MS"
    REQUEST_ID_HEADER = "TELEMETRY_REQUEST_ID_HEADER"
    STRICT = "TELEMETRY_STRICT"
    RETENTION_DAYS = "TELEMETRY_RETENTION_DAYS"
    QUEUE_SIZE = "TELEMETRY_QUEUE_SIZE"
    BATCH_SIZE = "TELEMETRY_BATCH_SIZE"
    FLUSH_INTERVAL = "TELEMETRY_FLUSH_INTERVAL"
    SHUTDOWN_TIMEOUT = "TELEMETRY_SHUTDOWN_TIMEOUT"
    LOCK_TIMEOUT_MS = "TELEMETRY_LOCK_TIMEOUT_MS"
    STATEMENT_TIMEOUT_MS = "TELEMETRY_STATEMENT_TIMEOUT_MS"
    CONNECT_TIMEOUT_MS = "TELEMETRY_CONNECT_TIMEOUT_MS"
    DURABLE_COMMIT = "TELEMETRY_DURABLE_COMMIT"
    MAX_RETRIES = "TELEMETRY_MAX_RETRIES"
    RETRY_BACKOFF = "TELEMETRY_RETRY_BACKOFF"
    BREAKER_THRESHOLD = "TELEMETRY_BREAKER_THRESHOLD"
    BREAKER_COOLDOWN = "TELEMETRY_BREAKER_COOLDOWN"
    # Correlation, sampling and privacy.
    TRACEPARENT = "TELEMETRY_TRACEPARENT"
    EXCLUDE = "TELEMETRY_EXCLUDE"
    SLOW_REQUEST_MS_BY_ENDPOINT = "TELEMETRY_SLOW_REQUEST_MS_BY_ENDPOINT"
    SAMPLE_RATE = "TELEMETRY_SAMPLE_RATE"
    SAMPLE_KEEP_STATUS = "TELEMETRY_SAMPLE_KEEP_STATUS"
    REDACT_KEYS = "TELEMETRY_REDACT_KEYS"
    METADATA_MAX_BYTES = "TELEMETRY_METADATA_MAX_BYTES"
    IP_MODE = "TELEMETRY_IP_MODE"
    IP_HASH_KEY = "TELEMETRY_IP_HASH_KEY"
    #: With the SQLAlchemy integration enabled (:doc:`integrations/sqlalchemy`),
    #: statements slower than this, in milliseconds, are recorded as
    #: ``db_query_slow``; ``None`` times no statement.
    SLOW_QUERY_MS = "TELEMETRY_SLOW_QUERY_MS"


#: Requests telemetry ignores by default: static files and health checks.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "static",
    "*.static",
    "/health",
    "/healthz",
    "/livez",
    "/readyz",
)

#: Every key with its default, in documentation order.
DEFAULTS: dict[str, t.Any] = {
    ConfigVars.ENABLED: True,
    ConfigVars.DELIVERY: "async",
    ConfigVars.BIND_KEY: None,
    ConfigVars.RECORD_REQUESTS: True,
    ConfigVars.SLOW_REQUEST_MS: 1000,
    ConfigVars.REQUEST_ID_HEADER: "X-Request-ID",
    ConfigVars.STRICT: False,
    ConfigVars.RETENTION_DAYS: 7,
    ConfigVars.QUEUE_SIZE: 10_000,
    ConfigVars.BATCH_SIZE: 500,
    ConfigVars.FLUSH_INTERVAL: 0.5,
    ConfigVars.SHUTDOWN_TIMEOUT: 5.0,
    ConfigVars.LOCK_TIMEOUT_MS: 500,
    ConfigVars.CONNECT_TIMEOUT_MS: 2000,
    ConfigVars.STATEMENT_TIMEOUT_MS: 2000,
    ConfigVars.DURABLE_COMMIT: False,
    ConfigVars.MAX_RETRIES: 3,
    ConfigVars.RETRY_BACKOFF: 0.2,
    ConfigVars.BREAKER_THRESHOLD: 5,
    ConfigVars.BREAKER_COOLDOWN: 10.0,
    ConfigVars.TRACEPARENT: True,
    ConfigVars.EXCLUDE: DEFAULT_EXCLUDE,
    ConfigVars.SLOW_REQUEST_MS_BY_ENDPOINT: types.MappingProxyType({}),
    ConfigVars.SAMPLE_RATE: 1.0,
    ConfigVars.SAMPLE_KEEP_STATUS: 400,
    ConfigVars.REDACT_KEYS: DEFAULT_REDACT_KEYS,
    ConfigVars.METADATA_MAX_BYTES: 8192,
    ConfigVars.IP_MODE: "full",
    ConfigVars.IP_HASH_KEY: None,
    ConfigVars.SLOW_QUERY_MS: None,
}

_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """The validated configuration of one application."""

    enabled: bool
    delivery: t.Literal["sync", "async"]
    bind_key: str | None
    record_requests: bool
    slow_request_ms: float
    request_id_header: str
    strict: bool
    retention_days: int
    queue_size: int
    batch_size: int
    flush_interval: float
    shutdown_timeout: float
    lock_timeout_ms: int
    connect_timeout_ms: int
    statement_timeout_ms: int
    max_retries: int
    retry_backoff: float
    breaker_threshold: int
    breaker_cooldown: float
    traceparent: bool = True
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    slow_request_ms_by_endpoint: t.Mapping[str, float] = dataclasses.field(
        default_factory=dict
    )
    sample_rate: float = 1.0
    sample_keep_status: int = 400
    redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS
    metadata_max_bytes: int = 8192
    ip_mode: str = "full"
    ip_hash_key: bytes | None = dataclasses.field(default=None, repr=False)
    durable_commit: bool = False


def _bool(config: t.Mapping[str, t.Any], key: str) -> bool:
    value = config[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be True or False, not {value!r}.")
    return value


def _number(
    config: t.Mapping[str, t.Any], key: str, *, integer: bool, minimum: float
) -> t.Any:
    value = config[key]
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:  # type: ignore[operator]
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{key} must be {kind} >= {minimum}, not {value!r}.")
    return value


def load_settings(config: t.Mapping[str, t.Any]) -> Settings:
    """Validate ``config`` (defaults already set); raise ValueError naming the key."""
    delivery = config[ConfigVars.DELIVERY]
    if delivery not in ("sync", "async"):
        raise ValueError(
            f"{ConfigVars.DELIVERY} must be 'sync' or 'async', not {delivery!r}."
        )
    bind_key = config[ConfigVars.BIND_KEY]
    if bind_key is not None and bind_key not in (config.get("SQLALCHEMY_BINDS") or {}):
        raise ValueError(
            f"{ConfigVars.BIND_KEY} is {bind_key!r}, which is not a key of "
            f"SQLALCHEMY_BINDS ({sorted(config.get('SQLALCHEMY_BINDS') or {})})."
        )
    header = config[ConfigVars.REQUEST_ID_HEADER]
    if not isinstance(header, str) or not _HEADER.fullmatch(header):
        raise ValueError(
            f"{ConfigVars.REQUEST_ID_HEADER} must be an HTTP header name, "
            f"not {header!r}."
        )

    def num(key: str, *, integer: bool = False, minimum: float = 0) -> t.Any:
        return _number(config, key, integer=integer, minimum=minimum)

    return Settings(
        enabled=_bool(config, ConfigVars.ENABLED),
        delivery=delivery,
        bind_key=bind_key,
        record_requests=_bool(config, ConfigVars.RECORD_REQUESTS),
        slow_request_ms=num(ConfigVars.SLOW_REQUEST_MS),
        request_id_header=header,
        strict=_bool(config, ConfigVars.STRICT),
        retention_days=num(ConfigVars.RETENTION_DAYS, integer=True, minimum=1),
        queue_size=num(ConfigVars.QUEUE_SIZE, integer=True, minimum=1),
        batch_size=num(ConfigVars.BATCH_SIZE, integer=True, minimum=1),
        flush_interval=num(ConfigVars.FLUSH_INTERVAL, minimum=0.001),
        shutdown_timeout=num(ConfigVars.SHUTDOWN_TIMEOUT),
        lock_timeout_ms=num(ConfigVars.LOCK_TIMEOUT_MS, integer=True, minimum=1),
        connect_timeout_ms=num(ConfigVars.CONNECT_TIMEOUT_MS, integer=True, minimum=1),
        statement_timeout_ms=num(
            ConfigVars.STATEMENT_TIMEOUT_MS, integer=True, minimum=1
        ),
        durable_commit=_bool(config, ConfigVars.DURABLE_COMMIT),
        max_retries=num(ConfigVars.MAX_RETRIES, integer=True),
        retry_backoff=num(ConfigVars.RETRY_BACKOFF),
        breaker_threshold=num(ConfigVars.BREAKER_THRESHOLD, integer=True, minimum=1),
        breaker_cooldown=num(ConfigVars.BREAKER_COOLDOWN),
        **_signal_settings(config),
    )


def _strings(config: t.Mapping[str, t.Any], key: str) -> tuple[str, ...]:
    value = config[key]
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{key} must be a list of strings, not {value!r}.")
    if not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key} must hold non-empty strings only, not {value!r}.")
    return tuple(value)


def _signal_settings(config: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """Correlation, sampling and privacy keys, validated."""
    slow_by = config[ConfigVars.SLOW_REQUEST_MS_BY_ENDPOINT]
    key = ConfigVars.SLOW_REQUEST_MS_BY_ENDPOINT
    if not isinstance(slow_by, t.Mapping) or not all(
        isinstance(k, str)
        and k
        and not isinstance(v, bool)
        and isinstance(v, (int, float))
        and v >= 0
        for k, v in slow_by.items()
    ):
        raise ValueError(
            f"{key} must map endpoint names (or patterns such as 'admin.*') to "
            f"milliseconds >= 0, not {slow_by!r}."
        )
    rate = config[ConfigVars.SAMPLE_RATE]
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float))
        or not (0 <= rate <= 1)
    ):
        raise ValueError(
            f"{ConfigVars.SAMPLE_RATE} must be a number from 0.0 to 1.0, not {rate!r}."
        )
    keep = config[ConfigVars.SAMPLE_KEEP_STATUS]
    if isinstance(keep, bool) or not isinstance(keep, int) or not 100 <= keep <= 600:
        raise ValueError(
            f"{ConfigVars.SAMPLE_KEEP_STATUS} must be an HTTP status from 100 to "
            f"600 (600 keeps no status), not {keep!r}."
        )
    max_bytes = _number(
        config, ConfigVars.METADATA_MAX_BYTES, integer=True, minimum=256
    )
    mode = config[ConfigVars.IP_MODE]
    if mode not in IP_MODES:
        raise ValueError(
            f"{ConfigVars.IP_MODE} must be one of {', '.join(map(repr, IP_MODES))}, "
            f"not {mode!r}."
        )
    secret = config[ConfigVars.IP_HASH_KEY]
    if secret is not None and not (isinstance(secret, (str, bytes)) and secret):
        raise ValueError(
            f"{ConfigVars.IP_HASH_KEY} must be a non-empty str or bytes, or None."
        )
    if mode == "hash" and secret is None:
        app_secret = config.get("SECRET_KEY") or None
        if not isinstance(app_secret, (str, bytes)):
            raise ValueError(
                f"{ConfigVars.IP_MODE} = 'hash' needs a secret: set "
                f"{ConfigVars.IP_HASH_KEY} (or the app's SECRET_KEY)."
            )
        # A key of its own, derived from SECRET_KEY: hashes made with it
        # reveal nothing about the application's signing key.
        raw = app_secret.encode() if isinstance(app_secret, str) else app_secret
        secret = hmac.new(raw, b"flask_telemetry.ip_hash", hashlib.sha256).digest()
    exclude = _strings(config, ConfigVars.EXCLUDE)
    for selector in exclude:
        if selector.startswith("/") and "*" in selector[:-1]:
            raise ValueError(
                f"{ConfigVars.EXCLUDE}: a path prefix may only end with '*', "
                f"not {selector!r}."
            )
    return {
        "traceparent": _bool(config, ConfigVars.TRACEPARENT),
        "exclude": exclude,
        "slow_request_ms_by_endpoint": types.MappingProxyType(dict(slow_by)),
        "sample_rate": float(rate),
        "sample_keep_status": keep,
        "redact_keys": _strings(config, ConfigVars.REDACT_KEYS),
        "metadata_max_bytes": max_bytes,
        "ip_mode": mode,
        "ip_hash_key": secret.encode() if isinstance(secret, str) else secret,
    }
