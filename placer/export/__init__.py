"""Export placements for serving engines and read engine files back (see :mod:`placer.export.formats`)."""

from placer.export.formats import *  # noqa: F401,F403
from placer.export.formats import (CSV_HEADER, FORMATS, SGLANG_COUNTS_KEY, SGLANG_KEY,  # noqa: F401
                                   _from_eplb_npz)
