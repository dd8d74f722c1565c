"""Sphinx extension: the configuration reference, generated from the code.

``.. telemetry-config::`` renders one ``confval`` entry per key declared on
``flask_telemetry.ConfigVars``, in that order, with its default taken from
the code. A key's description is its declared one-line summary, followed by
the text given for it in the directive's body::

    .. telemetry-config::

       TELEMETRY_ENABLED
          Turn telemetry off...

A key with neither is a warning, so a build with ``-W`` fails until the
reference is complete. A description whose key the code does not have (yet,
or any more) is not shown.
"""

from __future__ import annotations

import types
import typing as t

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)


def _shown(value: object) -> str:
    """A default as a user would write it in their config."""
    if isinstance(value, types.MappingProxyType):
        value = dict(value)
    return f"``{value!r}``"


def _code_docs() -> dict[str, list[str]]:
    """The one-line summary each key declares, keyed by configuration key."""
    from flask_telemetry._config import KEYS

    return {str(key): [key.doc] for key in KEYS}


def _body_docs(content: StringList) -> dict[str, list[str]]:
    """The directive body: a key at column 0, its description indented below."""
    docs: dict[str, list[str]] = {}
    key = None
    for line in content:
        if line and not line[0].isspace():
            key = line.strip()
            docs[key] = []
        elif key is not None:
            docs[key].append(line[3:] if line.startswith("   ") else line.strip())
    return docs


class TelemetryConfigDirective(SphinxDirective):
    """Render every configuration key with its default and description."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        from flask_telemetry._config import DEFAULTS

        code = _code_docs()
        body = _body_docs(self.content)
        where = self.get_location()
        for key in sorted(body.keys() - DEFAULTS.keys()):
            # Not a warning: the description may land before its key does.
            logger.info(
                "%s is described in the configuration reference but is not a key "
                "declared on flask_telemetry.ConfigVars: not shown",
                key,
                location=where,
            )
        lines: list[str] = []
        for key, default in DEFAULTS.items():
            description = [*code.get(key, []), "", *body.get(key, [])]
            if not any(line.strip() for line in description):
                logger.warning(
                    "%s has no description: give its Key a summary or add an "
                    "entry in the configuration reference",
                    key,
                    location=where,
                )
            lines += [f".. confval:: {key}", "", f"   :Default: {_shown(default)}", ""]
            lines += [f"   {line}" if line else "" for line in description]
            lines.append("")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=where), 0, container)
        return container.children


def setup(app: Sphinx) -> dict[str, t.Any]:
    app.add_object_type(
        "confval",
        "confval",
        objname="configuration value",
        indextemplate="pair: %s; configuration value",
    )
    app.add_directive("telemetry-config", TelemetryConfigDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
