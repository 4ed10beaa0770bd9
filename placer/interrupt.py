"""How the ``moe-place`` process ends on SIGTERM: at once, with SIGTERM's status, whatever runs.

Native libraries may install their own SIGTERM handler while they run: METIS (inside pymetis)
traps SIGTERM and SIGABRT for the length of each call and longjmps out, so a SIGTERM then
becomes a "METIS failed" return (and the command carried on and wrote its output), or, when the
signal lands on another thread, a crash. :func:`install` therefore blocks SIGTERM in the main
thread before any other thread exists (so every thread, a library's included, inherits the
block and no handler ever runs) and leaves one thread waiting for it in ``sigwait``. When it
comes, that thread removes the fallback temporary files (:func:`placer.fileio.remove_temps`),
runs the callbacks registered with :func:`on_terminate`, resets the disposition to the default
and re-raises the signal, so the process dies of SIGTERM (exit status 143 in a shell).
Outputs are written atomically and scratch files are unnamed (:mod:`placer.fileio`), so no
partial or temporary file remains; child processes are tied to the parent by their own means
(the replay's reaper, :mod:`placer.validate.reaper`).

Children inherit the blocked mask across exec; code that starts processes which must obey
SIGTERM unblocks it there (:func:`unblock`). SIGINT is left to Python (KeyboardInterrupt, exit
130). Only the CLI entry point installs this; importing placer as a library changes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from typing import Callable, Iterator

_callbacks: list[Callable[[], None]] = []
_installed = False


def install() -> None:
    """Block SIGTERM in this (main) thread and start the thread that ends the process on it.

    Does nothing off the main thread, twice, or when SIGTERM is ignored (``nohup``-style parents).
    """
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_watch, name="moe-place-sigterm", daemon=True).start()
    _installed = True


def installed() -> bool:
    return _installed


def on_terminate(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` (quick, no locks) before the process dies of SIGTERM; returns a remover."""
    _callbacks.append(callback)
    return lambda: _callbacks.remove(callback) if callback in _callbacks else None


def unblock() -> None:
    """Let SIGTERM through in the calling thread (a child process that inherited the block)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


@contextlib.contextmanager
def sigterm_deferred() -> Iterator[None]:
    """Hold SIGTERM back in this thread while the block runs (around native code that traps it),
    then let it through: a SIGTERM that came meanwhile acts after the block, as it would have."""
    if _installed or threading.current_thread() is not threading.main_thread():
        yield   # already blocked everywhere (install), or not ours to change
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _watch() -> None:
    signal.sigwait({signal.SIGTERM})
    from placer.fileio import remove_temps
    for callback in [remove_temps, *_callbacks]:
        with contextlib.suppress(BaseException):
            callback()
    die(signal.SIGTERM)


def die(signum: int) -> None:
    """End the process by ``signum`` with the default action, from any thread."""
    libc = ctypes.CDLL(None)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal(signum, None)            # SIG_DFL, replacing whatever a library installed
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)
