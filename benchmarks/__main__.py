"""``python -m benchmarks``: run the whole benchmark and publish its results."""

from __future__ import annotations

from .run import main

raise SystemExit(main())
