"""Imports follow the layers: http -> domain -> storage; reading -> storage;
dashboard -> reading; integrations use the public API only."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "flask_telemetry"
LAYERS = ["http", "domain", "storage"]  # top to bottom
#: Shared leaf modules any part may import.
LEAVES = {"flask_telemetry.exceptions"}
#: Which parts of the package each part may import (besides itself and LEAVES).
ALLOWED: dict[str, set[str]] = {
    "http": {"domain", "storage"},
    "domain": {"storage"},
    "storage": set(),
    # The read side reads the table; it knows nothing of requests or delivery.
    "reading": {"storage"},
    # Pages over the read API and the application's state, as the CLI reads.
    "dashboard": {"reading", "storage", "<state>", "<public>"},
    # Integrations record through the public API, like an application.
    "integrations": {"<public>"},
}
#: Third-party packages a part must not import.
FORBIDDEN: dict[str, set[str]] = {
    "domain": {"flask", "flask_sqlalchemy", "werkzeug"},
    # The model is declared on the application's Flask-SQLAlchemy ``db``,
    # but storage knows nothing of requests.
    "storage": {"flask", "werkzeug"},
    # The read side: SQLAlchemy over the table, usable without an app.
    "reading": {"flask", "flask_sqlalchemy", "werkzeug"},
}


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute module names imported by ``path``, relative ones resolved."""
    module = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(module.parts)
    if parts[-1] == "__init__":
        parts.pop()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + (path.name == "__init__.py")]
                name = ".".join(base + ([node.module] if node.module else []))
                found.add(name)
                if not node.module:
                    found.update(f"{name}.{a.name}" for a in node.names)
            else:
                found.add(node.module or "")
    return found


def _part_of(module: str) -> str | None:
    """The part of the package ``module`` belongs to: a subpackage name,
    ``<public>`` for the package itself, ``<private>`` for another module."""
    parts = module.split(".")
    if parts[0] != "flask_telemetry":
        return None
    if len(parts) == 1:
        return "<public>"
    is_module = (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").exists()
    if not is_module:  # ``from flask_telemetry import Telemetry``
        return "<public>"
    if parts[1] in ALLOWED:
        return parts[1]
    if module == "flask_telemetry._wiring":
        return "<state>"
    if module in LEAVES:
        return None
    return "<private>"


def _parts() -> list[str]:
    return [p for p in ALLOWED if (PACKAGE / p).is_dir()]


@pytest.mark.parametrize("part", _parts())
def test_imports_follow_the_layers(part: str) -> None:
    allowed = ALLOWED[part] | {part}
    files = sorted((PACKAGE / part).rglob("*.py"))
    assert files
    for path in files:
        for module in _imports(path):
            target = _part_of(module)
            assert target is None or target in allowed, (
                f"{path.relative_to(PACKAGE)} imports {module}: {part} may only "
                f"import {sorted(allowed)}"
            )


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_lower_layers_know_no_flask(part: str) -> None:
    if not (PACKAGE / part).is_dir():
        pytest.skip(f"no {part} package")
    for path in sorted((PACKAGE / part).rglob("*.py")):
        for module in _imports(path):
            root = module.split(".")[0]
            assert root not in FORBIDDEN[part], (
                f"{path.relative_to(PACKAGE)} imports {module}"
            )


def test_the_checker_sees_a_violation() -> None:
    """The import walk resolves relative imports, so a wrong one is caught."""
    imports = _imports(PACKAGE / "storage" / "writer.py")
    assert "flask_telemetry.exceptions" in imports
    assert "flask_telemetry.storage.row" in imports
    assert _part_of("flask_telemetry.http.hooks") == "http"
    assert _part_of("flask_telemetry._extension") == "<private>"
    assert _part_of("flask_telemetry.Telemetry") == "<public>"
    assert "flask_telemetry.domain.delivery.protocol" in _imports(
        PACKAGE / "domain" / "recorder.py"
    )
    assert (
        _part_of("flask_telemetry.domain.delivery.protocol") not in ALLOWED["storage"]
    )


# -- the whole package: no circle, and floors only import the floors below ----

#: The package's floors, top to bottom: a module imports only from floors
#: below its own (or its own part), except the package root's re-exports.
FLOORS: list[set[str]] = [
    {"flask_telemetry"},
    {"pytest_plugin"},
    {"testing", "integrations"},
    {"_extension"},
    {"cli", "dashboard"},
    {"_wiring"},
    {"_read_api", "http"},
    {"_config"},
    {"domain", "reading"},
    {"storage"},
    {"_checks", "exceptions"},
]


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (at
    the top, inside functions and under TYPE_CHECKING alike): ``from . import
    x`` is an arrow to the module ``x`` when there is one, else to the
    package."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        arrows: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                arrows.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package[: len(package) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    arrows.add(target if target in modules else base)
        graph[name] = {a for a in arrows if a in modules and a != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph``, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph[module]):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module)
        if found:
            return found
    return None


def _floor(module: str) -> tuple[int, str]:
    """The floor of ``module`` and the part of the package it belongs to."""
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else parts[0]
    for index, floor in enumerate(FLOORS):
        if part in floor:
            return index, part
    raise AssertionError(f"{module} is on no floor: add its part to FLOORS")


def test_the_package_has_no_import_circle() -> None:
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_floors_import_only_downwards() -> None:
    for module, targets in sorted(_graph().items()):
        floor, part = _floor(module)
        for target in sorted(targets):
            target_floor, target_part = _floor(target)
            if target_part == part or target == "flask_telemetry":
                continue  # within a part; the root's re-exports
            assert target_floor > floor, (
                f"{module} imports {target}, on a floor above or beside its own"
            )


def test_the_graph_sees_circles_and_arrows_up() -> None:
    graph = _graph()
    assert "flask_telemetry.storage.row" in graph["flask_telemetry.storage.writer"]
    assert "flask_telemetry.reading.rollups" in graph["flask_telemetry._read_api"]
    circle = {**graph, "flask_telemetry.storage.row": {"flask_telemetry._wiring"}}
    assert _cycle(circle) is not None
    assert _floor("flask_telemetry.storage.row") > _floor("flask_telemetry._wiring")
