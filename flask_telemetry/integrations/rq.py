r"""RQ: carry the request id into jobs and record how they end.

Two halves, one line each. Where jobs are enqueued, in the app factory::

    from flask_telemetry.integrations import rq as telemetry_rq

    telemetry_rq.instrument(None, telemetry)

(the target is ``None``: RQ has no application object, and the patch below
is one for the process) and to run the worker with the app's context::

    FLASK_APP=myapp:create_app rq worker \
        --worker-class flask_telemetry.integrations.rq.Worker

A job created inside a request (or inside ``with corr.activate():``) carries
the request id and W3C trace id in ``job.meta``. :class:`Worker` (or
:class:`SimpleWorker`) loads the Flask app the way the ``flask`` command
does, runs every job inside its app context with those ids active, so the
job's ``record()`` calls and log records carry them, and records
``worker_job_end`` or ``worker_job_fail`` (and ``worker_job_start`` with
``record_start=True``).

Why a worker class: RQ has no signals, a worker started by ``rq worker``
must load the Flask app anyway, and ``--worker-class`` is RQ's own way to
change how jobs are performed. The enqueue side is a patch of
``Job.create``, put in place by :func:`instrument` and removed by
:func:`uninstrument`, so every queue, ``enqueue_at``/``enqueue_in`` and
dependent jobs are covered without changing how the application makes its
queues.

Nothing here raises into the job or the enqueue: a failure in the hooks is
logged on the ``flask_telemetry`` logger and the job goes on untouched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import typing as t
import warnings

from flask import Flask, has_app_context

from flask_telemetry import Telemetry

from . import require
from ._jobs import (
    REQUEST_ID_KEY,
    RETRIES_KEY,
    TRACE_ID_KEY,
    JobOptions,
    JobRun,
    Jobs,
    cut,
    incoming_correlation,
    logger,
    outgoing_ids,
    warn,
)

require("rq", "rq")

import rq  # noqa: E402
from rq.job import Job  # noqa: E402

_lock = threading.Lock()
_jobs: Jobs | None = None
_original_create: t.Any = None


#: The options of :func:`instrument`: ``app``, ``record_start``, ``slow_ms``
#: and ``include_message``.
Options = JobOptions


def instrument(
    target: Telemetry | None = None,
    telemetry: Telemetry | None = None,
    **options: t.Any,
) -> None:
    """Carry ids in the jobs created from now on, and let :class:`Worker`
    record jobs with ``telemetry``.

    :param target: ``None``, RQ in this process (RQ has no application
        object). ``instrument(telemetry)``, the form before ``target``
        existed, still works but is deprecated.
    :param telemetry: the :class:`~flask_telemetry.Telemetry` to record with.
    :param options: the fields of :class:`Options`: ``app``, the Flask app
        to record in when a job runs outside an app context
        (:class:`Worker` always pushes one, so rarely needed);
        ``record_start``, also record ``worker_job_start``; ``slow_ms``
        (10,000), a run longer than this is recorded as slow and always
        kept under sampling; ``include_message``, put the exception's
        message in ``worker_job_fail``.

    Calling it again replaces the options; :func:`uninstrument` undoes it.
    """
    global _jobs, _original_create
    if isinstance(target, Telemetry) and telemetry is None:
        warnings.warn(
            "rq.instrument(telemetry) is deprecated: call "
            "rq.instrument(None, telemetry), the target first as in every "
            "integration.",
            DeprecationWarning,
            stacklevel=2,
        )
        target, telemetry = None, target
    _check_target(target)
    jobs = Jobs(telemetry=t.cast(Telemetry, telemetry), options=Options(**options))
    with _lock:
        _jobs = jobs
        if _original_create is None:
            _original_create = Job.__dict__["create"]
            setattr(Job, "create", classmethod(_carrying(_original_create.__func__)))  # noqa: B010


def uninstrument(target: None = None) -> None:
    """Stop carrying ids and recording jobs (a no-op if not instrumented)."""
    global _jobs, _original_create
    _check_target(target)
    with _lock:
        _jobs = None
        if _original_create is not None:
            setattr(Job, "create", _original_create)  # noqa: B010
            _original_create = None


def is_instrumented(target: None = None) -> bool:
    """Whether :func:`instrument` is in force."""
    _check_target(target)
    return _jobs is not None


def _check_target(target: object) -> None:
    if target is not None:
        raise TypeError(
            f"The target of the RQ integration is None (RQ itself), not {target!r}."
        )


def _carrying(create: t.Callable[..., Job]) -> t.Callable[..., Job]:
    @functools.wraps(create)
    def create_carrying_ids(cls: type[Job], *args: t.Any, **kwargs: t.Any) -> Job:
        job = create(cls, *args, **kwargs)
        try:
            jobs = _jobs
            if jobs is not None:
                meta = job.meta
                for key, value in outgoing_ids(jobs.telemetry).items():
                    meta.setdefault(key, value)
        except Exception:
            warn("rq-enqueue", "Telemetry could not add its ids to a job")
        return job

    return create_carrying_ids


class _Recording:
    """Performs each job with its correlation active and records the outcome.

    Mixed into RQ's :class:`rq.Worker` and :class:`rq.SimpleWorker`; mix it
    into a worker class of your own the same way (before the RQ class).
    """

    #: Seconds a forked work horse waits, after its job, for telemetry's
    #: writer to store the job's events before the horse exits.
    flush_timeout: float = 2.0

    _telemetry_run: JobRun | None = None

    def work(self, *args: t.Any, **kwargs: t.Any) -> bool:
        """Work inside the Flask app's context (loaded as ``flask`` does)."""
        if has_app_context():
            result: bool = super().work(*args, **kwargs)  # type: ignore[misc]
            return result
        app = self.load_flask_app()
        with app.app_context():
            if _jobs is None:
                logger.warning(
                    "flask_telemetry.integrations.rq.instrument() was not called "
                    "when the app was made: this worker records no jobs."
                )
            result = super().work(*args, **kwargs)  # type: ignore[misc]
            return result

    def load_flask_app(self) -> Flask:
        """The app whose context jobs run in: ``FLASK_APP``, as ``flask`` finds it.

        Override to build it differently (``return create_app()``).
        """
        from flask.cli import ScriptInfo

        return ScriptInfo(app_import_path=os.environ.get("FLASK_APP")).load_app()

    def perform_job(self, job: Job, queue: rq.Queue, *args: t.Any, **kw: t.Any) -> bool:
        """Perform ``job`` with its correlation active; record how it ended."""
        run = self._start_run(job, queue)
        if run is None:
            ok: bool = super().perform_job(job, queue, *args, **kw)  # type: ignore[misc]
            return ok
        will_retry = bool(getattr(job, "retries_left", None))
        ok = False
        try:
            ok = super().perform_job(job, queue, *args, **kw)  # type: ignore[misc]
        finally:
            self._telemetry_run = None
            self._finish_run(run, job, failed=not ok, will_retry=will_retry)
        return ok

    def handle_exception(self, job: Job, *exc_info: t.Any) -> None:
        """Note the exception class for ``worker_job_fail``, then let RQ handle it."""
        run = self._telemetry_run
        if run is not None and exc_info and run.job_id == cut(job.id, 64):
            run.exception = exc_info[1] if exc_info[1] is not None else exc_info[0]
            if getattr(job, "retries_left", None) and isinstance(job.meta, dict):
                # RQ counts only retries asked for by returning Retry: count
                # the retries after an exception in the meta RQ saves next.
                job.meta[RETRIES_KEY] = (run.retries or 0) + 1
        super().handle_exception(job, *exc_info)  # type: ignore[misc]

    def _start_run(self, job: Job, queue: rq.Queue) -> JobRun | None:
        jobs = _jobs
        if jobs is None:
            return None
        run: JobRun | None = None
        try:
            meta = job.meta if isinstance(job.meta, dict) else {}
            try:
                name = job.func_name
            except Exception:  # a job that cannot be deserialized
                name = None
            retries = getattr(job, "number_of_retries", None) or meta.get(RETRIES_KEY)
            run = JobRun(
                jobs=jobs,
                system="rq",
                job=cut(name),
                job_id=cut(job.id, 64),
                queue=cut(job.origin or getattr(queue, "name", None)),
                retries=retries if type(retries) is int else 0,
                correlation=incoming_correlation(
                    jobs.telemetry, meta.get(REQUEST_ID_KEY), meta.get(TRACE_ID_KEY)
                ),
            )
            self._telemetry_run = run
            run.start()
            return run
        except Exception:
            self._telemetry_run = None
            if run is not None:
                run.close()
            warn("rq-start", "Telemetry could not record the start of a job")
            return None

    def _finish_run(
        self, run: JobRun, job: Job, *, failed: bool, will_retry: bool
    ) -> None:
        try:
            started, ended = job.started_at, job.ended_at
            if started is not None and ended is not None:
                duration_ms = (ended - started).total_seconds() * 1000.0
                run.finish_with(
                    duration_ms=duration_ms, failed=failed, will_retry=will_retry
                )
                run.close()
            else:
                run.finish(failed=failed, will_retry=will_retry)
        except Exception:
            run.close()
            warn("rq-finish", "Telemetry could not record the end of a job")
        if getattr(self, "_is_horse", False):
            # A forked work horse ends with os._exit(): store what it recorded.
            with contextlib.suppress(Exception):
                run.jobs.telemetry.flush(self.flush_timeout)


class Worker(_Recording, rq.Worker):
    """RQ's forking :class:`rq.Worker`, recording jobs with flask_telemetry."""


class SimpleWorker(_Recording, rq.SimpleWorker):
    """RQ's :class:`rq.SimpleWorker` (no fork), recording jobs with flask_telemetry."""


__all__ = [
    "Options",
    "SimpleWorker",
    "Worker",
    "instrument",
    "is_instrumented",
    "uninstrument",
]
