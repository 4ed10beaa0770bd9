"""The wall-clock budget of a command: ``--time-limit`` counts from the command's start to the
file written, so the search gets what reading, profiling and scoring leave.

The start is when the ``placer`` package is first imported (:data:`placer.STARTED`, the first
thing a ``moe-place`` process runs), so every import counts; only the interpreter's own start-up
before it (tens of milliseconds) does not. Not the process's start time from ``/proc``: a shell
that runs a command line's last program replaces itself by it (``exec``), and the process keeps
the shell's start time, so ``bash -c "pip install -e . && moe-place solve ..."`` counted the whole
install against the limit. Times are ``time.perf_counter()`` values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """``limit`` seconds from ``start`` (a ``perf_counter`` value)."""

    limit: float
    start: float

    @classmethod
    def since_start(cls, limit: float) -> "Budget":
        """``limit`` seconds from the command's start (:data:`placer.STARTED`)."""
        import placer
        return cls(float(limit), placer.STARTED)

    @property
    def deadline(self) -> float:
        return self.start + self.limit

    def left(self, reserve: float = 0.0) -> float:
        """Seconds until the deadline, less ``reserve`` (may be negative)."""
        return self.deadline - reserve - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
