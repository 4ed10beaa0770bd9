"""The data model: Trace, Profile, Placement and Topology, and their file formats (nothing else).

- :class:`~placer.model.trace.Trace`: per-token expert ids ``[L, T, K]`` and the native ``.npz``.
- :class:`~placer.model.profile.Profile`: routing counts (``load [L, E]``, ``trans [L-1, E, E]``,
  ``coact [L, E, E]``) and the profile ``.npz``.
- :class:`~placer.model.placement.Placement`: ``phy2log [L, G * S]`` and its canonical JSON.
- :class:`~placer.model.topology.Topology`: G GPUs in nodes, hop costs and bandwidths.
"""

from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace

__all__ = ["Placement", "Profile", "Topology", "Trace"]
