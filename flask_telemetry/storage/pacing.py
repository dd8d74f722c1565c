"""How the writer thread shares the GIL with the application's threads.

The writer's Python work for a batch (building rows, validating them,
handing them to the driver) takes milliseconds. A request thread that
wants the GIL meanwhile waits until the writer gives it up: at a system
call, or after the interpreter's switch interval (5 ms by default), which
shows in the application's tail latency. So the writer gives the GIL up
itself every :data:`SLICE` rows (:func:`paced`): a waiting thread takes it
at once; with no thread waiting the writer goes on, for the cost of one
system call.
"""

from __future__ import annotations

import functools
import itertools
import time
import typing as t

_T = t.TypeVar("_T")

#: Rows of work between two pauses: about 0.1-0.5 ms of the writer's time.
SLICE = 64

#: Release the GIL and take it back, letting a waiting thread run first.
pause = functools.partial(time.sleep, 0)

_chain = itertools.chain.from_iterable


def paced(items: t.Sequence[_T]) -> t.Iterator[_T]:
    """``items``, with a :func:`pause` between every :data:`SLICE` of them.

    The items come from ``itertools.chain`` over slices of the sequence: a
    generator resumed for every item would cost ten times as much per item
    as the loop it feeds (about 800 instructions, against 50 here).
    """
    return _chain(_slices(items, SLICE))


def _slices(items: t.Sequence[_T], size: int) -> t.Iterator[t.Sequence[_T]]:
    for start in range(0, len(items), size):
        if start:
            pause()
        yield items[start : start + size]
