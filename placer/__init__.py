"""moe-place: decide where the experts of a Mixture-of-Experts model live on a GPU cluster.

Data flows Trace -> Profile -> solver -> Placement -> evaluate / validate / export (see
``docs/design.md``). Importing this package imports nothing heavy (no numpy, never torch): the
data model classes below load on first use, so the CLI can set up its signal handling
(:mod:`placer.interrupt`) before any library starts a thread.
"""

import time as _time

# when the command started, for --time-limit (placer.budget): the first thing this package does
STARTED = _time.perf_counter()

from placer.errors import PlacerError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["PlacerError", "Placement", "Profile", "Topology", "Trace", "__version__"]


def __getattr__(name: str):
    if name in ("Placement", "Profile", "Topology", "Trace"):
        import placer.model
        return getattr(placer.model, name)
    raise AttributeError(f"module 'placer' has no attribute {name!r}")
