"""Progress bars for long work: shown on a terminal, silent when stderr is piped or under CI."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator


def interactive() -> bool:
    """True when a human is watching: stderr is a terminal and CI is not set."""
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextlib.contextmanager
def progress(description: str, total: float | None = None, unit: str = "") -> Iterator[Callable[[float], None]]:
    """Yield ``advance(n)``; draws a rich progress bar on a terminal, does nothing otherwise."""
    if not interactive():
        yield lambda n=1: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=True, console=_console()) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def _console():
    from rich.console import Console
    return Console(stderr=True)
