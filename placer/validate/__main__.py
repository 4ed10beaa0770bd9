"""``python -m placer.validate TRACE PLACEMENT ...``: the validate command, e.g. one torchrun rank."""

import sys

from placer.cli import main

main(["validate", *sys.argv[1:]], own_process=True)
