"""The public surface is decided and visible: what is public is documented in
docs/api.rst, everything else says it is internal (docs/design.rst)."""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

from flask_telemetry import Telemetry

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flask_telemetry"
API = (ROOT / "docs" / "api.rst").read_text()
#: The public modules; the integrations' own are documented in docs/integrations/.
PUBLIC = {
    "flask_telemetry",
    "flask_telemetry.exceptions",
    "flask_telemetry.reading",
    "flask_telemetry.testing",
    "flask_telemetry.pytest_plugin",
    "flask_telemetry.integrations",
}
#: Public packages whose submodules are internal unless listed in PUBLIC.
PUBLIC_PACKAGES = {"reading", "integrations"}


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def _is_integration(name: str) -> bool:
    parts = name.split(".")
    return (
        len(parts) == 3 and parts[1] == "integrations" and not parts[2].startswith("_")
    )


@pytest.mark.parametrize("name", _modules())
def test_every_module_is_public_or_visibly_internal(name: str) -> None:
    if name in PUBLIC or _is_integration(name):
        return
    parts = name.split(".")
    if any(p.startswith("_") for p in parts[1:]):
        return  # a leading underscore on the module or a package above it
    package = importlib.import_module(".".join(parts[:2]))
    if parts[1] in PUBLIC_PACKAGES:
        # A public package's API is what it exports; its modules are internal.
        assert len(parts) > 2, name
        return
    # The internal packages (the layers, cli, dashboard) say so and export nothing.
    assert ":meta private:" in (package.__doc__ or ""), package.__name__
    assert package.__all__ == [], package.__name__


@pytest.mark.parametrize(
    "module", ["flask_telemetry", "flask_telemetry.reading", "flask_telemetry.testing"]
)
def test_public_names_are_documented(module: str) -> None:
    exported = importlib.import_module(module).__all__
    assert exported
    for name in exported:
        shown = name if module == "flask_telemetry" else f"{module}.{name}"
        assert re.search(rf"\b{re.escape(shown)}\b", API), f"{module}.{name}"


def test_every_public_member_of_telemetry_is_documented() -> None:
    [members] = re.findall(r"autoclass:: Telemetry\n   :members: ([^:]*)", API)
    documented = {m.strip() for m in members.split(",")}
    public = {n for n in dir(Telemetry) if not n.startswith("_")}
    assert public == documented


def test_helpers_for_the_package_are_not_public_members() -> None:
    for name in ("delivering_to", "counters", "keep_routine", "count_sampled_out"):
        assert not hasattr(Telemetry, name), name


def test_no_dead_intent() -> None:
    assert not (PACKAGE / "domain" / "intent.py").exists()
    recorder = importlib.import_module("flask_telemetry.domain.recorder")
    assert not hasattr(recorder.Recorder, "record")
