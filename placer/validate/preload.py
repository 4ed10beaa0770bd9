"""Imported by the replay's fork server only (its preload list): the fork server dies with the
command (:func:`placer.validate.reaper.die_with_parent`), and so, in turn, do the ranks it forks.

A rank the fork server is starting when the command is interrupted reads its process object
from a pipe the dead command cut short (``EOFError``, ``UnpicklingError``) or gets the terminal's
Ctrl-C: multiprocessing then prints that bootstrap error's traceback through ``sys.excepthook``
(a rank's own errors never reach it: the rank's entry point reports them). Such a rank ends
quietly instead; the command reports the interruption in its one line.

Never import this module in the command itself: it would tie the command to its own parent.
"""

import pickle
import sys

from placer.validate.reaper import die_with_parent

_INTERRUPTED_START = (EOFError, pickle.UnpicklingError, KeyboardInterrupt, BrokenPipeError, ConnectionError)


def _quiet_interrupted_start(kind, value, tb):
    if not issubclass(kind, _INTERRUPTED_START):
        sys.__excepthook__(kind, value, tb)


sys.excepthook = _quiet_interrupted_start
die_with_parent()
