"""Where a request's database time goes: its statements counted by shape.

A :class:`Tally` is opened when a request (or a job) starts and read when it
ends. The SQLAlchemy integration adds every statement of the application's
engines to the open tally of the current context (:data:`current`): a
statement's shape is the SQL as the dialect compiled it, with placeholders,
never the parameter values, so the ``n`` statements of an ORM loop share one
shape. What is kept is bounded: at most ``max_shapes`` distinct shapes per
tally (later shapes are counted under :data:`OTHER`, not kept), and a
profile keeps at most :data:`PROFILE_STATEMENTS` statements.
"""

from __future__ import annotations

import contextvars
import json
import typing as t

#: The shape under which statements past the cap on distinct shapes are
#: counted.
OTHER = "(other statements)"
#: Statements kept in one profile; the rest are counted in ``dropped``.
PROFILE_STATEMENTS = 200
#: Characters kept of a shape in a profile (slow statements and N+1 events
#: keep the integration's ``max_statement_chars``).
PROFILE_SHAPE_CHARS = 300

#: ``[count, seconds, timings, bind_key]`` of one shape; ``timings`` is a
#: list of ``(started, seconds)`` when the tally profiles, else None.
Entry: t.TypeAlias = list[t.Any]


class Tally(dict[str, Entry]):
    """The statements of one request or job, by shape (see :data:`Entry`)."""

    __slots__ = ("max_shapes", "profile", "started")

    def __init__(self, *, started: float, profile: bool, max_shapes: int) -> None:
        super().__init__()
        #: ``time.perf_counter()`` when the request or job started.
        self.started = started
        #: Keep each statement's start and duration.
        self.profile = profile
        self.max_shapes = max_shapes

    def add(
        self, shape: str, seconds: float, started: float, bind_key: str | None
    ) -> None:
        """Count a statement whose shape is not in the tally yet."""
        if len(self) >= self.max_shapes:
            shape = OTHER
            entry = self.get(shape)
            if entry is not None:
                entry[0] += 1
                entry[1] += seconds
                if entry[2] is not None:
                    entry[2].append((started, seconds))
                return
        self[shape] = [
            1,
            seconds,
            [(started, seconds)] if self.profile else None,
            bind_key,
        ]

    def figures(self) -> tuple[int, float]:
        """``(statements, seconds)`` of everything counted."""
        count = 0
        seconds = 0.0
        for entry in self.values():
            count += entry[0]
            seconds += entry[1]
        return count, seconds

    def repeated(self, threshold: int) -> list[tuple[str, Entry]]:
        """The shapes run ``threshold`` times or more (none when it is 0),
        most frequent first; never :data:`OTHER`, which is many shapes."""
        if threshold <= 0:
            return []
        found = [
            (shape, entry)
            for shape, entry in self.items()
            if entry[0] >= threshold and shape != OTHER
        ]
        found.sort(key=lambda item: -item[1][0])
        return found

    def profile_metadata(
        self, cut: t.Callable[[str, int], str], max_bytes: int
    ) -> dict[str, t.Any]:
        """The statements of a profiled tally as metadata of at most about
        ``max_bytes`` of JSON: ``shapes`` (each cut by ``cut(shape, chars)``)
        and ``statements`` as ``[shape index, start ms from the start,
        duration ms]`` in the order they started; ``dropped`` counts the
        statements left out to fit (at most :data:`PROFILE_STATEMENTS`)."""
        kept = [(shape, entry[2]) for shape, entry in self.items() if entry[2]]
        # The shapes may take half the room, the statements the other half.
        chars = PROFILE_SHAPE_CHARS
        if kept:
            chars = max(16, min(chars, max_bytes // 2 // len(kept) - 8))
        shapes: list[str] = []
        rows: list[list[t.Any]] = []
        for index, (shape, timings) in enumerate(kept):
            shapes.append(cut(shape, chars))
            for started, seconds in timings:
                rows.append(
                    [
                        index,
                        round((started - self.started) * 1000.0, 3),
                        round(seconds * 1000.0, 3),
                    ]
                )
        rows.sort(key=lambda row: t.cast(float, row[1]))
        room = max_bytes - len(json.dumps(shapes)) - 64
        size = 0
        count = 0
        for row in rows[:PROFILE_STATEMENTS]:
            size += len(json.dumps(row)) + 2
            if size > room:
                break
            count += 1
        metadata: dict[str, t.Any] = {"shapes": shapes, "statements": rows[:count]}
        if len(rows) > count:
            metadata["dropped"] = len(rows) - count
        return metadata


#: The tally of the request or job running in this context, if any.
current_tally: contextvars.ContextVar[Tally | None] = contextvars.ContextVar(
    "flask_telemetry_db_tally", default=None
)
