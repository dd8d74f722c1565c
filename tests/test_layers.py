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
    # Pages over the read API (and the public names, for the vocabulary).
    "dashboard": {"reading", "storage", "<public>"},
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
