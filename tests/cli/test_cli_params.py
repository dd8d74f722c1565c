"""Hostile values given to every parameter of the read commands.

The parameters are walked from each command's declaration (``command.params``),
so that an option added later is fuzzed without anyone listing it here. A
value either is refused as a usage error (exit 2, the option named, no
traceback) or is one the option's type accepts, and then the command
answers (exit 0, or 1 with a message) without a traceback, on every database.
"""

from __future__ import annotations

import typing as t

import click
import pytest

from conftest import Bundle
from flask_telemetry.cli.read import COMMANDS
from reading_data import request_end, store

HOSTILE = [
    "-1",
    "-9223372036854775809",
    "9223372036854775808",
    "1" * 400,
    "abc",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "",
    " ",
    "a\x00b",
    "\x00",
    "' OR 1=1 --",
    "%_*?[]\\/",
    "\U0001f4a5",
    "\u202eabc\u2066",
    "\udcff",
    "x" * 3000,
    "0001-01-01T00:00+01:00",
    "9999-12-31T23:59-01:00",
    "0001-01-02T00:00Z",
    "99999999999999999999w",
    "P9999999999W",
    "1" * 3000 + "s",
]

#: Values a flag option cannot take; its absence and presence are run instead.
FLAG = object()

# Arguments every command needs besides the one fuzzed.
_REQUIRED: dict[str, list[str]] = {"trace": ["r-1"]}


def _cases() -> list[t.Any]:
    cases = []
    for command in COMMANDS:
        assert command.name is not None
        for param in command.params:
            if isinstance(param, click.Option) and param.is_flag:
                continue
            for index, value in enumerate(HOSTILE):
                cases.append(
                    pytest.param(
                        command, param, value, id=f"{command.name}-{param.name}-{index}"
                    )
                )
    return cases


def _invocation(
    command: click.Command, param: click.Parameter, value: str
) -> list[str]:
    assert command.name is not None
    if isinstance(param, click.Argument):
        return [command.name, value]
    # "--opt=value" so that a value starting with "-" is not read as an option.
    return [command.name, *_REQUIRED.get(command.name, []), f"{param.opts[-1]}={value}"]


def _accepted(param: click.Parameter, value: str) -> bool:
    try:
        param.type.convert(value, param, None)
    except click.BadParameter:
        return False
    return True


@pytest.fixture
def stored(bundle: Bundle) -> Bundle:
    store(bundle, [request_end("shop.item", 12.0), request_end(None, 5.0)])
    return bundle


@pytest.mark.parametrize(("command", "param", "value"), _cases())
def test_hostile_values_are_usage_errors_or_answers(
    stored: Bundle, command: click.Command, param: click.Parameter, value: str
) -> None:
    args = _invocation(command, param, value)
    result = stored.runner().invoke(args=["telemetry", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exc_info,
    )
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert "Error: Invalid value" in result.output or "Error:" in result.output
        names = [*param.opts, param.human_readable_name, param.name or ""]
        assert any(n and n in result.output for n in names), (args, result.output)
        return
    assert _accepted(param, value), (args, result.exit_code, result.output)
    assert result.exit_code in (0, 1), (args, result.output)
    if result.exit_code == 1:
        assert result.output.startswith("Error: "), (args, result.output)


def test_every_parameter_is_walked() -> None:
    """The walk reaches the options the commands declare (and a new one)."""
    walked = {(c.values[0].name, c.values[1].name) for c in _cases()}
    assert ("report", "since") in walked
    assert ("trace", "request_id") in walked
    assert ("tail", "route") in walked
    assert ("tail", "request_id") in walked
    assert ("prune", "batch_size") in walked


def test_a_trace_id_with_nul_is_no_such_request(stored: Bundle) -> None:
    result = stored.runner().invoke(args=["telemetry", "trace", "a\x00b"])
    assert result.exit_code == 1, result.output
    assert "No telemetry events for request id 'a\\x00b'" in result.output
