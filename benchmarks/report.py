"""Tables as reStructuredText (printed as they are), the chart, the README section."""

from __future__ import annotations

import dataclasses
import os
import re
import typing as t

START = ".. benchmark-results-start"
END = ".. benchmark-results-end"


@dataclasses.dataclass(kw_only=True)
class Table:
    """One result table: a title, a header row, rows, and a note under it."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""

    def rst(self) -> str:
        """The table as an RST simple table, preceded by its title."""
        widths = [
            max(len(row[i]) for row in [self.headers, *self.rows])
            for i in range(len(self.headers))
        ]
        rule = "  ".join("=" * w for w in widths)

        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))

        body = [rule, line(self.headers), rule, *map(line, self.rows), rule]
        parts = [f"**{self.title}**", "", *(s.rstrip() for s in body)]
        if self.note:
            parts += ["", self.note]
        return "\n".join(parts)


def section(tables: t.Sequence[Table], *, preamble: str, image: str | None) -> str:
    """The text between the README markers."""
    parts = [preamble]
    if image:
        parts.append(f".. image:: {image}\n   :alt: Throughput relative to bare Flask")
    parts += [table.rst() for table in tables]
    return "\n\n".join(parts) + "\n"


def update_readme(path: str, content: str) -> None:
    """Replace what is between the markers; add a Performance section if absent."""
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as readme:
            text = readme.read()
    block = f"{START}\n\n{content}\n{END}"
    if START in text and END in text:
        pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        heading = "Performance\n-----------\n\n"
        text = (text.rstrip() + "\n\n\n" if text.strip() else "") + heading + block
        text += "\n"
    with open(path, "w", encoding="utf-8") as readme:
        readme.write(text)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bar:
    """One bar of the chart: a median ratio and its interquartile range."""

    label: str
    median: float
    low: float
    high: float


def chart(
    path: str, panels: t.Sequence[tuple[str, list[tuple[str, list[Bar]]]]], title: str
) -> None:
    """Horizontal bars, one panel per measurement, one colour per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(len(series[0][1]) for _, series in panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.5 * len(panels), 0.42 * rows + 1.8), squeeze=False
    )
    for axis, (name, series) in zip(axes[0], panels, strict=True):
        labels = [bar.label for bar in series[0][1]]
        height = 0.8 / len(series)
        for index, (legend, bars) in enumerate(series):
            positions = [y - 0.4 + height * (index + 0.5) for y in range(len(labels))]
            values = [bar.median for bar in bars]
            errors = [
                [max(0.0, b.median - b.low) for b in bars],
                [max(0.0, b.high - b.median) for b in bars],
            ]
            axis.barh(positions, values, height, xerr=errors, label=legend, capsize=2)
        axis.set_yticks(range(len(labels)), labels)
        axis.invert_yaxis()
        axis.axvline(1.0, color="grey", linewidth=0.8)
        axis.set_xlim(0, 1.25)
        axis.set_xlabel("throughput relative to bare Flask (higher is better)")
        axis.set_title(name)
        axis.legend(loc="lower right", fontsize="small")
        axis.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
