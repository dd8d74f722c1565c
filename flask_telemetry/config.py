"""Configuration keys, their defaults, and their validation."""

from __future__ import annotations

import dataclasses
import re
import typing as t


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
    MAX_RETRIES = "TELEMETRY_MAX_RETRIES"
    RETRY_BACKOFF = "TELEMETRY_RETRY_BACKOFF"
    BREAKER_THRESHOLD = "TELEMETRY_BREAKER_THRESHOLD"
    BREAKER_COOLDOWN = "TELEMETRY_BREAKER_COOLDOWN"


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
    ConfigVars.STATEMENT_TIMEOUT_MS: 2000,
    ConfigVars.MAX_RETRIES: 3,
    ConfigVars.RETRY_BACKOFF: 0.2,
    ConfigVars.BREAKER_THRESHOLD: 5,
    ConfigVars.BREAKER_COOLDOWN: 10.0,
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
    statement_timeout_ms: int
    max_retries: int
    retry_backoff: float
    breaker_threshold: int
    breaker_cooldown: float


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
        statement_timeout_ms=num(
            ConfigVars.STATEMENT_TIMEOUT_MS, integer=True, minimum=1
        ),
        max_retries=num(ConfigVars.MAX_RETRIES, integer=True),
        retry_backoff=num(ConfigVars.RETRY_BACKOFF),
        breaker_threshold=num(ConfigVars.BREAKER_THRESHOLD, integer=True, minimum=1),
        breaker_cooldown=num(ConfigVars.BREAKER_COOLDOWN),
    )
