"""The bound's eigenvalue ascents in a second process, beside the search.

Why: on one core the search and the ascents share the time limit (``partition`` keeps
``bound_share``, 10 %, for the ascents), and the bound is very sensitive to that time: ESFT
intent on 2 x 8 GPUs gives 594,966 with 0.8 s of ascents and 834,275 with 3.2 s (gap 44 % ->
21 % against the same placement). Python threads do not help: the search holds the GIL for most
of its small numpy steps (a bound thread cut the search's kicks from 404 to 83 in 6 s). A forked
child gets its own core, the whole time limit, and changes nothing in the placement: the bound
never steers the search.

:func:`start` forks a child that runs :func:`placer.solvers.bounds.finish_bound` on the
:class:`~placer.solvers.bounds.Pending` bound (the flows are done) until the deadline and sends
back ``(value, method)``; :func:`collect` waits for it until a given time, then ends the child.
It starts only where two cores or more are this process's (``os.sched_getaffinity``) and the
fork start method exists (POSIX).

The child must not outlive the command or act on its signals: it ignores SIGINT (Ctrl-C reaches
the whole process group; the parent's KeyboardInterrupt ends the child through :func:`collect`'s
``finally`` in the caller), takes SIGTERM at its default (the CLI blocks SIGTERM in the main
thread, :mod:`placer.interrupt`, and a fork copies that mask), and on Linux asks the kernel for
SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so a killed command leaves no
process behind. It leaves by ``os._exit``: no atexit handler or buffered output of the parent
runs twice.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass

from placer.solvers.search.refine import single_thread_blas

PR_SET_PDEATHSIG = 1
GRACE_S = 0.25      # after the deadline, how long the parent waits for the child's last step


@dataclass
class Running:
    """A child computing the bound: its process and the read end of its pipe."""

    process: object
    conn: object


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def start(pending, deadline: float) -> Running | None:
    """Fork a child that finishes ``pending`` until ``deadline`` (``time.perf_counter()``
    seconds: the clock is shared with the child), or None where that does not apply (fewer than
    two cores, no fork, nothing left to compute: no ascents with replicas)."""
    # with replicas the bound is the pooled b-matching alone (no ascents): nothing to run beside
    if pending is None or pending.done is not None or pending.replicas or usable_cores() < 2:
        return None
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:
        return None
    read, write = ctx.Pipe(duplex=False)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    process = ctx.Process(target=_child, args=(pending, deadline, write, os.getpid()), daemon=True)
    try:
        process.start()
    except OSError:
        read.close()
        write.close()
        return None
    write.close()
    return Running(process, read)


def collect(running: Running, until: float) -> tuple[float, str] | None:
    """The child's ``(value, method)``, waiting until ``until`` at most; None when it failed or
    did not answer in time. The child is ended either way."""
    try:
        if running.conn.poll(max(0.0, until - time.perf_counter())):
            answer = running.conn.recv()
            if isinstance(answer, tuple) and len(answer) == 2:
                return float(answer[0]), str(answer[1])
        return None
    except (EOFError, OSError):
        return None
    finally:
        stop(running)


def stop(running: Running) -> None:
    """End the child (at once if it still runs) and release its pipe."""
    proc = running.process
    if proc.is_alive():
        proc.terminate()
    proc.join(timeout=1.0)
    if proc.is_alive():
        proc.kill()
        proc.join()
    running.conn.close()


def _child(pending, deadline: float, conn, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _die_with(parent)
    from placer.solvers.bounds import finish_bound

    answer = None
    try:
        with single_thread_blas():
            answer = finish_bound(pending, deadline)
    except Exception:           # the parent falls back to the bound it holds
        answer = None
    try:
        conn.send(answer)
    except OSError:
        pass
    os._exit(0)


def _die_with(parent: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(0)
