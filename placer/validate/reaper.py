"""Nothing of a replay outlives the command: the reaper, and tying ranks to their parent.

The command may die at any moment, by SIGKILL too, while its ranks run, and then no code of
its own can clean up. So before the ranks start, :class:`Reaper` starts this module as a small
process of its own session (``python -m placer.validate.reaper``; stdlib only, no numpy) that
reads registrations on a pipe from the command: ``pid N`` (a rank, the fork server), ``dir
PATH`` (the run's temporary folder, multiprocessing's ``pymp-*``) and ``forget`` (the run ended
cleanly: the pids are reaped and must not be signalled, the run's folder is gone and ``pymp-*``
is multiprocessing's to remove at exit). When the pipe closes, for whatever reason
the command ended, it SIGKILLs the pids still registered, removes the folders and exits.

Besides, every rank and the fork server ask the kernel to SIGKILL them when their parent dies
(:func:`die_with_parent`, Linux ``prctl(PR_SET_PDEATHSIG)``), so the chain command -> fork
server -> ranks unwinds even without the reaper.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; no-op elsewhere),
    and exit now if the parent is already gone. Also lets SIGTERM through (the command blocks it,
    and children inherit the block)."""
    with contextlib.suppress(Exception):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


class Reaper:
    """The command's side: start the reaper, register what it must clean, close when done."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "placer.validate.reaper"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                     close_fds=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})

    def _send(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()

    def pid(self, pid: int | None) -> None:
        if pid:
            self._send(f"pid {int(pid)}")

    def folder(self, path: str) -> None:
        self._send(f"dir {path}")

    def close(self) -> None:
        """The run ended (cleanly, or with an error the command reports): forget everything."""
        self._send("forget")
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def main() -> None:
    """The reaper process: collect registrations until the pipe closes, then clean up."""
    with contextlib.suppress(Exception):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a Ctrl-C for the command's group is not for us
    pids: set[int] = set()
    folders: list[str] = []
    for raw in sys.stdin.buffer:
        cmd, _, arg = raw.decode(errors="replace").strip().partition(" ")
        if cmd == "pid" and arg.isdigit():
            pids.add(int(arg))
        elif cmd == "dir" and arg:
            folders.append(arg)
        elif cmd == "forget":
            pids.clear()
            folders.clear()
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for path in folders:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
