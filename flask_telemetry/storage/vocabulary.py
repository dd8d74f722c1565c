"""The vocabulary stored in the ``event_type``, ``severity`` and ``actor_type`` columns.

Values are what the database stores: members are added, never renamed.
"""

from __future__ import annotations

import enum


class EventType(str, enum.Enum):
    """What happened. The value is what the database stores."""

    #: A request started (off by default: ``http_request_end`` carries the timing).
    HTTP_REQUEST_START = "http_request_start"
    #: A request finished; metadata holds method, status and duration_ms.
    HTTP_REQUEST_END = "http_request_end"
    #: A rate limit rejected a call.
    RATE_LIMIT_HIT = "rate_limit_hit"
    #: A cache lookup missed.
    CACHE_MISS = "cache_miss"
    #: A cache lookup hit.
    CACHE_HIT = "cache_hit"
    #: A database query was slower than expected.
    DB_QUERY_SLOW = "db_query_slow"
    #: One statement shape ran many times in one request or job (an N+1):
    #: metadata holds the statement (placeholders only), count and total_ms.
    DB_N_PLUS_ONE = "db_n_plus_one"
    #: Every statement of one profiled request: metadata holds their shapes,
    #: start offsets and durations (``TELEMETRY_QUERY_PROFILE_RATE``).
    DB_QUERY_PROFILE = "db_query_profile"
    #: A call to another service was slower than expected.
    EXTERNAL_CALL_SLOW = "external_call_slow"
    #: A call to another service failed.
    EXTERNAL_CALL_FAIL = "external_call_fail"
    #: A background job started.
    WORKER_JOB_START = "worker_job_start"
    #: A background job finished.
    WORKER_JOB_END = "worker_job_end"
    #: A background job failed.
    WORKER_JOB_FAIL = "worker_job_fail"
    #: A login succeeded.
    AUTH_LOGIN_SUCCESS = "auth_login_success"
    #: A login failed.
    AUTH_LOGIN_FAILURE = "auth_login_failure"
    #: A step-up (second factor) check succeeded.
    AUTH_STEPUP_SUCCESS = "auth_stepup_success"
    #: A step-up (second factor) check failed.
    AUTH_STEPUP_FAILURE = "auth_stepup_failure"
    #: A notable data query ran.
    DATA_QUERY_EXECUTED = "data_query_executed"
    #: A resource was created, changed or deleted.
    RESOURCE_MUTATION = "resource_mutation"
    #: An unexpected exception was seen.
    SYSTEM_EXCEPTION = "system_exception"


class Severity(str, enum.Enum):
    """How much an event matters, in increasing order."""

    #: Detail for debugging.
    DEBUG = "debug"
    #: Routine signal (the default).
    INFO = "info"
    #: Normal but worth noticing.
    NOTICE = "notice"
    #: Something was slow or degraded.
    WARNING = "warning"
    #: Something failed.
    ERROR = "error"
    #: Something failed badly.
    CRITICAL = "critical"


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


#: Severities from least to most important: ``SEVERITY_RANK["warning"] == 3``.
SEVERITY_RANK: dict[str, int] = {s.value: i for i, s in enumerate(Severity)}
