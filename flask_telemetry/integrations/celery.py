"""Celery: carry the request id into tasks and record how they end.

Enable it where the Celery app is made, usually Flask's ``celery_init_app``::

    from flask_telemetry.integrations import celery as telemetry_celery

    telemetry_celery.instrument(celery_app, telemetry, app=app)

A task published inside a request (or inside ``with corr.activate():``)
carries the request id and W3C trace id in two message headers, set in
Celery's ``before_task_publish`` signal. The worker activates them while the
task runs (``task_prerun`` to ``task_postrun``), so the task's ``record()``
calls and log records carry them, and records ``worker_job_end`` or
``worker_job_fail`` (and ``worker_job_start`` with ``record_start=True``).

The hooks never raise into the task or the publish: a failure in them is
logged on the ``flask_telemetry`` logger and the task goes on untouched.
"""

from __future__ import annotations

import threading
import typing as t
import weakref

from flask_telemetry import Telemetry

from . import require
from ._jobs import (
    REQUEST_ID_KEY,
    TRACE_ID_KEY,
    JobOptions,
    JobRun,
    Jobs,
    cut,
    incoming_correlation,
    outgoing_ids,
    warn,
)

require("celery", "celery")

from celery import signals  # type: ignore[import-untyped]  # noqa: E402

#: Celery states of a run that raised: for good, or asking for a retry.
_RETRY = "RETRY"
_FAILURE = "FAILURE"

_lock = threading.Lock()
_instrumented: weakref.WeakKeyDictionary[t.Any, Jobs] = weakref.WeakKeyDictionary()
#: Where a run waits from task_prerun to task_postrun: on the task's request,
#: which Celery pushes for one execution (an eager retry nests another).
_RUN = "_flask_telemetry_run"
_UID = "flask_telemetry.integrations.celery"

T = t.TypeVar("T")


#: The options of :func:`instrument`: ``app``, ``record_start``, ``slow_ms``
#: and ``include_message``.
Options = JobOptions


def instrument(celery_app: T, telemetry: Telemetry, **options: t.Any) -> T:
    """Record the tasks of ``celery_app`` with ``telemetry``; return ``celery_app``.

    :param celery_app: the :class:`celery.Celery` application.
    :param telemetry: the :class:`~flask_telemetry.Telemetry` to record with.
    :param options: the fields of :class:`Options`: ``app``, the Flask app
        to record in when a hook runs outside an app context (Flask's
        ``FlaskTask`` pushes one only around the task's body), needed for
        sampling and when telemetry serves several apps; ``record_start``,
        also record ``worker_job_start``; ``slow_ms`` (10,000), a run
        longer than this is recorded as slow and always kept under
        sampling; ``include_message``, put the exception's message in
        ``worker_job_fail``.

    Calling it again replaces the options; :func:`uninstrument` undoes it.
    """
    jobs = Jobs(telemetry=telemetry, options=Options(**options))
    with _lock:
        _instrumented[celery_app] = jobs
        _connect()
    return celery_app


def uninstrument(celery_app: t.Any) -> None:
    """Stop recording the tasks of ``celery_app`` (a no-op if it was not)."""
    with _lock:
        _instrumented.pop(celery_app, None)
        if not _instrumented:
            _disconnect()


def is_instrumented(celery_app: t.Any) -> bool:
    """Whether :func:`instrument` is in force for ``celery_app``."""
    return celery_app in _instrumented


def _connect() -> None:
    signals.before_task_publish.connect(_before_publish, weak=False, dispatch_uid=_UID)
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid=_UID)
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid=_UID)
    signals.worker_process_shutdown.connect(
        _process_shutdown, weak=False, dispatch_uid=_UID
    )


def _disconnect() -> None:
    signals.before_task_publish.disconnect(_before_publish, dispatch_uid=_UID)
    signals.task_prerun.disconnect(_prerun, dispatch_uid=_UID)
    signals.task_postrun.disconnect(_postrun, dispatch_uid=_UID)
    signals.worker_process_shutdown.disconnect(_process_shutdown, dispatch_uid=_UID)


def _jobs(task: t.Any) -> Jobs | None:
    try:
        return _instrumented.get(task.app)
    except (AttributeError, TypeError):  # not a task, or an app without weakrefs
        return None


def _before_publish(
    sender: t.Any = None, headers: dict[str, t.Any] | None = None, **_: t.Any
) -> None:
    """Put the current ids in the message headers (protocol 2)."""
    try:
        if headers is None or not _instrumented:
            return
        jobs = next(iter(_instrumented.values()), None)
        if jobs is None:
            return
        for key, value in outgoing_ids(jobs.telemetry).items():
            headers.setdefault(key, value)
    except Exception:
        warn("celery-publish", "Telemetry could not add its headers to a task")


def _header(request: t.Any, key: str) -> object:
    value = getattr(request, key, None)
    if value is None:  # protocol 1 keeps custom headers apart
        nested = getattr(request, "headers", None)
        if isinstance(nested, dict):
            value = nested.get(key)
    return value


def _prerun(
    sender: t.Any = None, task_id: str | None = None, task: t.Any = None, **_: t.Any
) -> None:
    """Activate the task's correlation and start its clock."""
    try:
        jobs = _jobs(task)
        if jobs is None or task_id is None:
            return
        request = task.request
        delivery = getattr(request, "delivery_info", None) or {}
        retries = getattr(request, "retries", None)
        run = JobRun(
            jobs=jobs,
            system="celery",
            job=cut(getattr(task, "name", None)),
            job_id=cut(task_id, 64),
            queue=cut(delivery.get("routing_key") or delivery.get("queue")),
            retries=retries if type(retries) is int else None,
            correlation=incoming_correlation(
                jobs.telemetry,
                _header(request, REQUEST_ID_KEY),
                _header(request, TRACE_ID_KEY),
            ),
        )
        setattr(request, _RUN, run)
        run.start()
    except Exception:
        warn("celery-prerun", "Telemetry could not record the start of a task")


def _postrun(
    sender: t.Any = None,
    task: t.Any = None,
    retval: t.Any = None,
    state: str | None = None,
    **_: t.Any,
) -> None:
    """Record how the task ended and deactivate its correlation."""
    try:
        request = task.request
        run = request.__dict__.pop(_RUN, None)
    except Exception:  # not a task
        return
    if not isinstance(run, JobRun):
        return
    try:
        failed = state in (_FAILURE, _RETRY)
        if state == _RETRY:
            retval = getattr(retval, "exc", None) or retval
        if failed and isinstance(retval, BaseException):
            run.exception = retval
        run.finish(failed=failed, will_retry=state == _RETRY)
    except Exception:
        run.close()
        warn("celery-postrun", "Telemetry could not record the end of a task")


#: Seconds a pool process waits at exit for its events to be stored.
SHUTDOWN_FLUSH_TIMEOUT = 2.0


def _process_shutdown(**_: t.Any) -> None:
    """Store what a prefork pool process recorded: it exits with os._exit(),
    which skips telemetry's own flush at exit."""
    for jobs in list(_instrumented.values()):
        try:
            with JobRun.recording_in(jobs):
                jobs.telemetry.flush(SHUTDOWN_FLUSH_TIMEOUT)
        except Exception:
            warn("celery-shutdown", "Telemetry could not flush at process exit")


__all__ = ["Options", "instrument", "is_instrumented", "uninstrument"]
