"""The cost model's byte prediction for the tokens a replay moves (numpy only).

The replay counts hidden-state rows of ``H`` fp32 values (``dtype_bytes = 4``) that cross from one
rank to another, on one node (every hop between two ranks costs 1). The prediction for the same
tokens, computed the way :mod:`placer.cost` defines it:

- ``ep``: :func:`placer.cost.ep_cost` with ``hidden_size=H, dtype_bytes=4`` and the replay's
  home ranks. ``bytes`` is dispatch plus combine. Its ``traffic`` counts dispatch copies from
  home a to expert GPU b only; combine sends the transpose back, so the per-link bytes the replay
  sends are ``(traffic + traffic.T) * H * 4`` and per-layer bytes ``2 * per_layer * H * 4``.
- ``coherent``: :func:`placer.cost.coherent_cost`. Its ``total``, ``per_layer`` and ``traffic``
  weigh each of a token's K x K pick pairs 1/K^2 (the mean over pairs); the replay sends one row
  per pair whose ranks differ, so bytes are those numbers times ``K^2 * H * 4``. The products are
  integers up to float rounding, which :func:`_exact` removes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from placer.cost import coherent_cost, ep_cost
from placer.model.placement import Placement
from placer.model.topology import Topology
from placer.model.trace import Trace

DTYPE_BYTES = 4  # the replay moves fp32 activations


def _exact(x) -> np.ndarray | int:
    r = np.rint(np.asarray(x, dtype=np.float64)).astype(np.int64)
    return int(r) if r.ndim == 0 else r


def predict_bytes(trace: Trace, placement: Placement, mode: str, hidden: int,
                  home: np.ndarray) -> dict[str, Any]:
    """``{"bytes": int, "per_layer": [n] ints, "traffic": [G, G] ints, "predicted_by": str}`` in bytes.

    ``per_layer`` has L entries for ``ep`` and L-1 transitions for ``coherent``; ``home`` ``[T]``
    is the replay's home rank per token.
    """
    topo = Topology.uniform(placement.num_gpus)
    row = hidden * DTYPE_BYTES
    if mode == "ep":
        res = ep_cost(trace, placement, topo, hidden_size=hidden, dtype_bytes=DTYPE_BYTES, home=home)
        traffic = np.asarray(res.traffic, np.int64)
        return {"bytes": _exact(res.bytes), "per_layer": (2 * row * np.asarray(res.per_layer, np.int64)).tolist(),
                "traffic": ((traffic + traffic.T) * row).tolist(), "predicted_by": "placer.cost.ep_cost"}
    res = coherent_cost(trace, placement, topo)
    scale = trace.top_k ** 2 * row
    return {"bytes": _exact(res.total * scale), "per_layer": _exact(np.asarray(res.per_layer) * scale).tolist(),
            "traffic": _exact(np.asarray(res.traffic) * scale).tolist(),
            "predicted_by": "placer.cost.coherent_cost"}
