"""The wall-clock budget of a command: ``--time-limit`` counts from the process start to the file
written, so the search gets what reading, profiling and scoring leave.

The start is the process's own start time (Linux ``/proc/self/stat``, so Python's start-up and the
imports count too); elsewhere the moment the budget is made. Times are ``time.perf_counter()``
values.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


def process_age() -> float:
    """Seconds since this process started (0.0 where the system does not say)."""
    try:
        with open("/proc/self/stat") as fh:
            stat = fh.read()
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        start_ticks = int(stat[stat.rfind(")") + 2:].split()[19])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass(frozen=True)
class Budget:
    """``limit`` seconds from ``start`` (a ``perf_counter`` value)."""

    limit: float
    start: float

    @classmethod
    def since_process_start(cls, limit: float) -> "Budget":
        return cls(float(limit), time.perf_counter() - process_age())

    @property
    def deadline(self) -> float:
        return self.start + self.limit

    def left(self, reserve: float = 0.0) -> float:
        """Seconds until the deadline, less ``reserve`` (may be negative)."""
        return self.deadline - reserve - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
