"""moe-place: decide where the experts of a Mixture-of-Experts model live on a GPU cluster.

Data flows Trace -> Profile -> solver -> Placement -> evaluate / validate / export (see
``docs/design.md``). Importing this package never imports torch; the collector and the
validator import it lazily.
"""

from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace

__version__ = "0.1.0"

__all__ = ["PlacerError", "Placement", "Profile", "Topology", "Trace", "__version__"]
