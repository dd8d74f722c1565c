"""Imports go one way: http -> domain -> storage; domain imports no Flask."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "flask_telemetry"
LAYERS = ["http", "domain", "storage"]  # top to bottom


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


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "flask_telemetry" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return None


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_only_go_down(layer: str) -> None:
    allowed = set(LAYERS[LAYERS.index(layer) :])
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files
    for path in files:
        for module in _imports(path):
            target = _layer_of(module)
            assert target is None or target in allowed, (
                f"{path.relative_to(PACKAGE)} imports {module}: {layer} may only "
                f"import {sorted(allowed)}"
            )
            if module.startswith("flask_telemetry") and target is None:
                # Shared leaf modules only: never the extension that wires layers.
                assert module in {"flask_telemetry", "flask_telemetry.exceptions"} or (
                    module == "flask_telemetry.config" and layer == "http"
                ), f"{path.relative_to(PACKAGE)} imports {module}"


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("domain", {"flask", "flask_sqlalchemy", "werkzeug"}),
        # The model is declared on the application's Flask-SQLAlchemy ``db``,
        # but storage knows nothing of requests.
        ("storage", {"flask", "werkzeug"}),
        # The read side: SQLAlchemy over the table, usable without an app.
        ("reading", {"flask", "flask_sqlalchemy", "werkzeug"}),
    ],
)
def test_lower_layers_know_no_flask(layer: str, forbidden: set[str]) -> None:
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in _imports(path):
            root = module.split(".")[0]
            assert root not in forbidden, (
                f"{path.relative_to(PACKAGE)} imports {module}"
            )


def test_the_checker_sees_a_violation(tmp_path: pathlib.Path) -> None:
    """The import walk resolves relative imports, so a wrong one is caught."""
    imports = _imports(PACKAGE / "storage" / "writer.py")
    assert "flask_telemetry.exceptions" in imports
    assert "flask_telemetry.storage.event" in imports
    assert _layer_of("flask_telemetry.http.hooks") == "http"


def test_reading_depends_on_storage_only() -> None:
    for path in sorted((PACKAGE / "reading").rglob("*.py")):
        for module in _imports(path):
            if module.startswith("flask_telemetry"):
                assert module.startswith(
                    ("flask_telemetry.reading", "flask_telemetry.storage")
                ), f"{path.relative_to(PACKAGE)} imports {module}"
