"""Head sampling of routine events."""

from __future__ import annotations

import random


class Sampler:
    """Keeps a ``rate`` share (0.0 to 1.0) of routine events.

    With a W3C trace id the decision is the one OpenTelemetry's
    ``TraceIdRatioBased`` sampler makes (the trace id's low 64 bits against
    ``rate * 2**64``), so services sampling at the same rate keep the same
    traces. Without one it is a random draw.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._bound = int(rate * 2**64)
        self._random = random.random

    def keep(self, trace_id: str | None = None) -> bool:
        """Whether to keep one routine event (of the trace ``trace_id``)."""
        if self.rate >= 1.0:
            return True
        if trace_id is not None:
            return int(trace_id[16:], 16) < self._bound
        return self._random() < self.rate
