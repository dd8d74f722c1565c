"""Every integration in the registry has the one interface.

``instrument(target, telemetry, **options) -> target``,
``uninstrument(target)``, ``is_instrumented(target)`` and a frozen
``Options`` dataclass; both calls idempotent, checked with real targets
(a Flask app, a ``requests.Session``, an ``httpx.Client``, a Celery app,
RQ itself); a missing library is :class:`DidNotEnable` naming its extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
import typing as t

import httpx
import jobs_app
import pytest
import requests
import rq.job
from celery import Celery, signals  # type: ignore[import-untyped]
from flask import Flask, got_request_exception, request_finished

from conftest import Bundle, MakeApp
from flask_telemetry import ConfigVars
from flask_telemetry.integrations import INTEGRATIONS, DidNotEnable, load

# The interface does not depend on the database.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

NAMES = sorted(INTEGRATIONS)
POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
)


@pytest.fixture
def bundle(make_app: MakeApp) -> Bundle:
    # A threshold, so that the SQLAlchemy integration has something to do.
    return make_app(**{ConfigVars.SLOW_QUERY_MS: 100})


@contextlib.contextmanager
def target_of(name: str, bundle: Bundle) -> t.Iterator[t.Any]:
    """A real object of the kind ``name``'s ``instrument()`` takes."""
    if name == "requests":
        with requests.Session() as session:
            yield session
    elif name == "httpx":
        with httpx.Client() as client:
            yield client
    elif name == "celery":
        yield Celery("interface", set_as_current=False)
    elif name == "rq":
        # RQ's is one patch for the process, which jobs_app.create_app()
        # makes: start from it undone.
        load("rq").uninstrument(None)
        yield None
    else:
        yield bundle.app


def wraps(fn: object) -> int:
    """How many wrappers ``fn`` is, 0 for none."""
    depth = 0
    while fn is not None and hasattr(fn, "__wrapped__"):
        fn, depth = fn.__wrapped__, depth + 1
    return depth


def footprint(name: str, target: t.Any, bundle: Bundle) -> object:
    """What ``instrument()`` installs, as a value that shows a duplicate."""
    if name in ("requests", "httpx"):
        return wraps(vars(target).get("send"))
    if name == "celery":
        # The signals are connected once for every instrumented Celery app.
        connected = len(signals.task_postrun.receivers or {})
        return connected, load("celery").is_instrumented(target)
    if name == "rq":
        return wraps(rq.job.Job.__dict__["create"].__func__)
    app: Flask = target
    if name == "exceptions":
        return len(list(got_request_exception.receivers_for(app)))
    if name == "flask_limiter":
        return len(list(request_finished.receivers_for(app)))
    with app.app_context():
        engine = bundle.db.engine
    return (
        len(engine.dispatch.after_cursor_execute),
        len(app.teardown_request_funcs.get(None, [])),
    )


@pytest.mark.parametrize("name", NAMES)
def test_the_registry_loads_each_module_with_the_three_calls(name: str) -> None:
    module = load(name)
    assert module.__name__ == INTEGRATIONS[name].module
    for call in ("instrument", "uninstrument", "is_instrumented", "Options"):
        assert call in module.__all__

    params = list(inspect.signature(module.instrument).parameters.values())
    assert all(p.kind in POSITIONAL for p in params[:2])
    assert params[1].name == "telemetry"
    assert [p.kind for p in params[2:]] == [inspect.Parameter.VAR_KEYWORD]
    for call in (module.uninstrument, module.is_instrumented):
        (param,) = inspect.signature(call).parameters.values()
        assert param.kind in POSITIONAL

    options: t.Any = module.Options
    assert isinstance(options, type)
    assert dataclasses.is_dataclass(options)
    assert options.__dataclass_params__.frozen  # type: ignore[attr-defined]
    defaults = options()  # every option has a default
    if dataclasses.fields(options):
        field = dataclasses.fields(options)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(defaults, field, None)


@sqlite_only
@pytest.mark.parametrize("name", NAMES)
def test_instrument_and_uninstrument_are_idempotent(name: str, bundle: Bundle) -> None:
    module = load(name)
    with target_of(name, bundle) as target:
        try:
            before = footprint(name, target, bundle)
            assert not module.is_instrumented(target)
            module.uninstrument(target)  # not instrumented: nothing happens
            assert footprint(name, target, bundle) == before

            assert module.instrument(target, bundle.telemetry) is target
            assert module.is_instrumented(target)
            once = footprint(name, target, bundle)
            assert once != before
            assert module.instrument(target, bundle.telemetry) is target
            assert module.is_instrumented(target)
            assert footprint(name, target, bundle) == once  # nothing twice

            module.uninstrument(target)
            assert not module.is_instrumented(target)
            assert footprint(name, target, bundle) == before
            module.uninstrument(target)
            assert footprint(name, target, bundle) == before
        finally:
            module.uninstrument(target)


@sqlite_only
@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_option_fails_at_instrument(name: str, bundle: Bundle) -> None:
    module = load(name)
    with target_of(name, bundle) as target:
        with pytest.raises(TypeError, match="no_such_option"):
            module.instrument(target, bundle.telemetry, no_such_option=1)
        assert not module.is_instrumented(target)


@pytest.mark.parametrize(
    "name", [n for n in NAMES if INTEGRATIONS[n].extra is not None]
)
def test_a_missing_library_names_its_extra(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration = INTEGRATIONS[name]
    monkeypatch.setitem(sys.modules, integration.library, None)
    with pytest.raises(DidNotEnable, match=rf"flask-telemetry\[{integration.extra}\]"):
        load(name)


def test_an_unknown_name_lists_the_integrations() -> None:
    with pytest.raises(ValueError, match="celery, rq"):
        load("django")


@sqlite_only
def test_a_core_config_key_is_the_default_of_its_option(make_app: MakeApp) -> None:
    sqlalchemy = load("sqlalchemy")
    assert sqlalchemy.Options().slow_ms is None
    bundle = make_app()  # TELEMETRY_SLOW_QUERY_MS is None: none is slow
    sqlalchemy.instrument(bundle.app, bundle.telemetry)
    assert bundle.app.extensions["telemetry.sqlalchemy"].listeners[0][1] == (
        "before_cursor_execute"
    )
    assert sqlalchemy.Options().n_plus_one_threshold is None
    assert bundle.app.extensions["telemetry.sqlalchemy"].n_plus_one == 10
    bundle.app.config["TELEMETRY_N_PLUS_ONE_THRESHOLD"] = 3
    sqlalchemy.instrument(bundle.app, bundle.telemetry, slow_ms=50)
    assert bundle.app.extensions["telemetry.sqlalchemy"].n_plus_one == 3
    assert sqlalchemy.is_instrumented(bundle.app)
    sqlalchemy.uninstrument(bundle.app)


def test_rq_takes_the_target_first_and_still_the_old_form() -> None:
    telemetry_rq = load("rq")
    telemetry = jobs_app.telemetry
    try:
        with pytest.warns(DeprecationWarning, match=r"instrument\(None, telemetry\)"):
            telemetry_rq.instrument(telemetry)
        assert telemetry_rq.is_instrumented(None)
        with pytest.raises(TypeError, match="None"):
            telemetry_rq.instrument(object(), telemetry)
    finally:
        telemetry_rq.uninstrument(None)
