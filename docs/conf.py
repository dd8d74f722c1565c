"""Sphinx configuration of the flask_telemetry documentation.

Build with warnings as errors (``make docs`` runs it)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The tests add ``-n``, which also makes a cross-reference without a target an
error (see "Cross-references" below).
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

# -- Cross-references (``sphinx -n``) -----------------------------------------
#
# The build runs offline, so there is no intersphinx: an inventory that cannot
# be fetched is a warning, an error with -W. Names of the standard library and
# of other projects therefore have no target; they are shown without a link
# instead of being reported. Our own names must all resolve: what is listed
# below them is internal, each with its reason.
#
# autodoc cannot evaluate an annotation that names something imported for the
# type checker only (``if t.TYPE_CHECKING:``), or that joins a type alias
# written as a string to None (``TimeBound | None``); it then shows the
# annotation's source text, names as written (``t.Iterable``, ``sa.Table``,
# ``Flask``). ``autodoc_type_aliases`` helps only where the name is the whole
# annotation: Sphinx shows an alias that is part of ``X | None`` as
# ``TypeAliasForwardRef('X')``.
autodoc_type_aliases = {
    # Telemetry.settings: for the type checker the settings are ConfigVars,
    # whose attributes they have (see flask_telemetry/_config.py).
    "Settings": "~flask_telemetry.ConfigVars",
}
nitpick_ignore_regex = [
    # The standard library and the libraries we integrate with (no inventory).
    ("py:.*", r"(datetime|enum|logging|types)\..+"),
    (
        "py:.*",
        r"(flask|flask_sqlalchemy|flask_limiter|marshmallow|sqlalchemy"
        r"|requests|httpx|redis|rq|celery)(\..+)?",
    ),
    # The same, as an unevaluated annotation writes them: ``import typing as
    # t``, ``import sqlalchemy as sa``.
    ("py:class", r"(t|sa)\.\w+"),
    # The TypeVars of ``instrument()``: it returns the object it was given
    # (its docstring says which).
    ("py:class", r"flask_telemetry\.integrations\.(celery\.T|httpx\.C)"),
    # What Telemetry.rollup() returns, internal (its docstring lists the
    # fields): as the annotation writes it, and as evaluated.
    ("py:class", r"(rollups|flask_telemetry\.reading\.rollups\.fold)\.RollupResult"),
]
nitpick_ignore = [
    # Other projects' names, bare, as an unevaluated annotation writes them:
    # in our signatures, and in rq.Worker's, which our RQ workers inherit.
    ("py:class", "Flask"),
    ("py:class", "SQLAlchemy"),
    ("py:class", "Job"),
    ("py:class", "Queue"),
    ("py:class", "Redis"),
    ("py:class", "Serializer"),
    ("py:class", "struct_rusage"),
    # Internal types in public signatures; the docstring says what to do
    # with them. Telemetry.timed() returns a Timed (a context manager and
    # decorator), Telemetry.delivery is a Delivery, TelemetryCapture(stats=)
    # takes the app's Stats.
    ("py:class", "flask_telemetry.domain.timing.Timed"),
    ("py:class", "flask_telemetry.domain.delivery.protocol.Delivery"),
    ("py:class", "Stats"),
    # The reading functions' own names for what they take, unevaluated:
    # ``Bind`` is an Engine or a Connection, ``_window.TimeBound`` is
    # flask_telemetry.reading.TimeBound, ``_sample.Sample`` is
    # flask_telemetry.reading.Sample.
    ("py:class", "Bind"),
    ("py:class", "_window.TimeBound"),
    ("py:class", "_sample.Sample"),
    # Internal names that public docstrings of the read side mention.
    ("py:data", "SLICES"),
    ("py:mod", "flask_telemetry.reading.percentiles"),
]
