"""What every cost model checks and derives from its inputs (trace or profile, placement, topology)."""

from __future__ import annotations

import numpy as np

from placer.cost import objectives
from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace


def check_compatible(data: Trace | Profile, placement: Placement, topology: Topology | None = None) -> None:
    """Raise :class:`PlacerError` unless trace/profile, placement and topology fit together."""
    L, E = data.num_layers, data.num_experts
    what = "trace" if isinstance(data, Trace) else "profile"
    if placement.num_layers != L:
        raise PlacerError(f"the placement has {placement.num_layers} layers but the {what} has {L} MoE layers; "
                          f"solve a placement for this {what}")
    # a trace may know fewer experts than the model (ids seen so far): those were never picked
    if placement.num_experts < E:
        raise PlacerError(f"the placement has {placement.num_experts} experts but the {what} has {E}; "
                          f"solve a placement for this {what}")
    if topology is not None and topology.num_gpus != placement.num_gpus:
        raise PlacerError(f"the placement uses {placement.num_gpus} GPUs but the topology has {topology.num_gpus}; "
                          f"pass --gpus {placement.num_gpus}")


def pad_experts(a: np.ndarray, num_experts: int, axes: tuple[int, ...]) -> np.ndarray:
    """Zero-pad the expert axes of ``a`` to ``num_experts`` (data that saw fewer experts)."""
    pad = [(0, num_experts - a.shape[ax]) if ax in axes else (0, 0) for ax in range(a.ndim)]
    return np.pad(a, pad) if any(p[1] for p in pad) else a


def bytes_per_copy(hidden_size: int, dtype_bytes: int) -> int:
    """Bytes per token copy, ``hidden_size * dtype_bytes``, or a :class:`PlacerError`."""
    if int(hidden_size) < 1 or int(dtype_bytes) < 1:
        raise PlacerError(f"--hidden-size and --dtype-bytes must be positive, got {hidden_size} and {dtype_bytes}")
    return int(hidden_size) * int(dtype_bytes)


def replica_gpus(placement: Placement) -> np.ndarray:
    """``[L, E, R]`` GPU of each replica of each expert (ascending physical slot), -1 padded."""
    return objectives.replica_gpus(placement.phy2log, placement.num_experts, placement.slots_per_gpu)
