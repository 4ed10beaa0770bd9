"""The load cost model: token picks per GPU per layer and their imbalance (max / mean).

A replicated expert's picks split evenly over its replicas. Computed by the one copy of the
load metric, :func:`~placer.cost.objectives.gpu_loads` and :func:`~placer.cost.objectives.imbalance`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from placer.cost import objectives
from placer.cost.inputs import check_compatible, pad_experts, replica_gpus
from placer.cost.registry import CostModel, register
from placer.cost.results import LoadCost
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.trace import DEFAULT_CHUNK_TOKENS, Trace


def load_cost(data: Trace | Profile, placement: Placement, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
              progress: Callable[[int], None] | None = None) -> LoadCost:
    """Token picks per GPU per layer and their imbalance (see :class:`LoadCost`).

    A Trace is read once, chunk by chunk, for its ``load [L, E]`` (``progress`` gets the tokens
    of every chunk); a Profile has it.
    """
    check_compatible(data, placement)
    load = (data.load if isinstance(data, Profile)
            else Profile.from_trace(data, chunk_tokens=chunk_tokens, coact=False, trans=False,
                                    progress=progress).load)
    load = pad_experts(np.asarray(load, dtype=np.float64), placement.num_experts, (1,))
    gpu_load = objectives.gpu_loads(load, replica_gpus(placement), placement.num_gpus)
    return LoadCost(gpu_load=gpu_load, imbalance=objectives.imbalance(gpu_load))


register(CostModel("load", lambda data, placement, topology, o: load_cost(
    data, placement, chunk_tokens=o.chunk_tokens, progress=o.progress).summary(), lambda data: None))
