"""What the tests share, one copy each (imported as ``support.*``: ``tests/conftest.py`` puts
``tests/`` on ``sys.path`` under pytest's default ``prepend`` import mode).

- :mod:`support.generate`: random traces, random valid placements, the hypothesis instances.
- :mod:`support.truths`: costs, loads and counts computed token by token from their definitions.
- :mod:`support.brute`: every placement of tiny instances, and the optimum over them.
- :mod:`support.cli`: running ``python -m placer`` as a user does, and what a user error looks like.

And the paths every test may need:
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SHARED_TRACES = Path(os.environ.get("MOE_PLACE_SHARED_TRACES", REPO.parent / "shared" / "traces"))
