"""One JSON-able report of a placement under the chosen cost models (what ``evaluate`` prints)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from placer.cost.coherent import coherent_cost
from placer.cost.ep import ep_cost
from placer.cost.inputs import check_compatible
from placer.cost.load import load_cost
from placer.errors import PlacerError
from placer.fileio import to_jsonable
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import DEFAULT_CHUNK_TOKENS, Trace

COST_MODELS = ("coherent", "ep", "load")
_MATRICES = ("traffic", "gpu_load")


def passes_over_trace(data: Trace | Profile, costs: Sequence[str]) -> int:
    """How many times :func:`evaluate` reads the tokens of ``data`` for ``costs`` (for progress)."""
    return len([c for c in costs if c in COST_MODELS]) if isinstance(data, Trace) else 0


def evaluate(data: Trace | Profile, placement: Placement, topology: Topology,
             costs: Sequence[str] = COST_MODELS, hidden_size: int | None = None, dtype_bytes: int = 2,
             home: np.ndarray | None = None, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
             matrices: bool = True, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """A JSON-able summary of the chosen cost models (plain Python types, arrays as lists).

    ``ep`` needs a Trace and ``coherent`` transition counts: without them their entry says it
    was skipped and why.
    ``matrices=False`` leaves out the ``[G, G]`` traffic and ``[L, G]`` load arrays.
    ``progress`` is called with the tokens of every chunk read (one pass per trace-based model).
    """
    unknown = [c for c in costs if c not in COST_MODELS]
    if unknown:
        raise PlacerError(f"unknown cost model {unknown[0]!r}; choose from {', '.join(COST_MODELS)}")
    check_compatible(data, placement, topology)
    L = data.num_layers
    out: dict[str, Any] = {
        "data": {"kind": "trace" if isinstance(data, Trace) else "profile", "num_layers": L,
                 "num_experts": data.num_experts, "num_tokens": int(data.num_tokens), "top_k": int(data.top_k)},
        "placement": {"num_gpus": placement.num_gpus, "slots_per_gpu": placement.slots_per_gpu,
                      "replicas_per_layer": placement.num_replicas},
        "topology": topology.describe(),
    }
    for name in costs:
        if name == "coherent" and isinstance(data, Profile) and data.trans is None and L > 1:
            out["coherent"] = {"model": "coherent", "skipped": "needs inter-layer transitions; these counts have loads only"}
            continue
        if name == "coherent":
            res = coherent_cost(data, placement, topology, chunk_tokens=chunk_tokens, progress=progress,
                                hidden_size=hidden_size, dtype_bytes=dtype_bytes).summary()
        elif name == "ep":
            if not isinstance(data, Trace):
                out["ep"] = {"model": "ep", "skipped": "needs a per-token trace, not aggregate counts"}
                continue
            res = ep_cost(data, placement, topology, hidden_size=hidden_size, dtype_bytes=dtype_bytes,
                          home=home, chunk_tokens=chunk_tokens, progress=progress).summary()
        else:
            res = load_cost(data, placement, chunk_tokens=chunk_tokens, progress=progress).summary()
        if not matrices:
            res = {k: v for k, v in res.items() if k not in _MATRICES}
        out[name] = res
    return to_jsonable(out)
