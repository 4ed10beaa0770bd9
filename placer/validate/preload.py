"""Imported by the replay's fork server only (its preload list): the fork server dies with the
command (:func:`placer.validate.reaper.die_with_parent`), and so, in turn, do the ranks it forks.

Never import this module in the command itself: it would tie the command to its own parent.
"""

from placer.validate.reaper import die_with_parent

die_with_parent()
