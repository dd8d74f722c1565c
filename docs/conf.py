"""Sphinx configuration of the flask_telemetry documentation.

Build with warnings as errors, as the tests do (``make docs`` runs it)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

import flask_telemetry  # noqa: E402

project = "flask_telemetry"
copyright = "the flask_telemetry authors"
version = release = flask_telemetry.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "telemetry_config",
]
exclude_patterns = ["_build", "examples"]
default_role = "code"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True}
html_theme = "furo"
html_title = f"flask_telemetry {release}"
