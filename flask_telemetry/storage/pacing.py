"""How the writer thread shares the GIL with the application's threads.

The writer's Python work for a batch (building rows, validating them,
handing them to the driver) takes milliseconds. A request thread that
wants the GIL meanwhile waits until the writer gives it up: at a system
call, or after the interpreter's switch interval (5 ms by default), which
shows in the application's tail latency. So the writer gives the GIL up
itself every :data:`SLICE` rows (:func:`pause`): a waiting thread takes it
at once; with no thread waiting the writer goes on, for the cost of one
system call.
"""

from __future__ import annotations

import functools
import time

#: Rows of work between two pauses: about 0.1-0.5 ms of the writer's time.
SLICE = 64

#: Release the GIL and take it back, letting a waiting thread run first.
pause = functools.partial(time.sleep, 0)
